//! Real Redis and PostgreSQL servers on loopback ports, in temporary directories, for tests.
//! Each server stops when its handle drops, and dies with the thread that started it.
//! The chaos verdict lives here too, so that the Rust tests and `wbc-verify` share one copy.
pub mod evidence;
pub mod ledger;
mod tls;
pub mod verdict;

pub use tls::{Certificates, PgAuth};

use std::{
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::{Pid, User, chown, geteuid},
};
use tempfile::TempDir;

/// Parses a file of evidence; an error names the file, since a verdict reads several.
fn read_file<T>(path: &Path, parse: impl FnOnce(&str) -> crate::Result<T>) -> crate::Result<T> {
    let named = |reason: String| crate::Error::invalid(path.display().to_string(), reason);
    parse(&std::fs::read_to_string(path).map_err(|e| named(e.to_string()))?).map_err(|e| named(e.to_string()))
}

/// The admin token (ADMIN_TOKEN) of the APIs that tests start, which their callers send.
pub const ADMIN_TOKEN: &str = "wbc-test-admin-token-0123456789";

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within 60s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the child as `user` (when we are root) and kills it if the starting thread dies.
fn as_service(cmd: &mut Command, user: Option<&User>) {
    let ids = user.map(|u| (u.uid, u.gid));
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = ids {
                nix::unistd::setgid(gid)?;
                nix::unistd::setuid(uid)?;
            }
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
}

fn stop(child: &mut Child, signal: Signal) {
    let _ = kill(Pid::from_raw(child.id() as i32), signal);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `redis-server` of our own.
pub struct RedisServer {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    args: Vec<String>,
    /// Listens with TLS only (`--tls-port`, and `--port 0`).
    tls: bool,
}

impl RedisServer {
    /// Redis without persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Redis with extra `redis-server` arguments, e.g. `--appendonly yes --appendfsync always`.
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("wbc-redis-").tempdir().expect("tempdir");
        let args = args.iter().map(|s| s.to_string()).collect();
        let mut server = Self { child: None, dir, port: free_port(), args, tls: false };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        match self.tls {
            true => cmd.args(["--port", "0", "--tls-port", &port]),
            false => cmd.args(["--port", &port]),
        };
        cmd.arg("--bind").arg("127.0.0.1");
        cmd.arg("--dir").arg(self.dir.path()).arg("--daemonize").arg("no").arg("--logfile").arg("redis.log");
        cmd.args(&self.args).stdout(Stdio::null()).stderr(Stdio::null());
        as_service(&mut cmd, None);
        self.child = Some(cmd.spawn().expect("redis-server runs (install the redis-server package)"));
        wait_for_port(self.port, "redis-server");
    }

    /// `redis://`, or `rediss://` for a server started with TLS.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "rediss" } else { "redis" }, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `kill -9`: no shutdown save, no AOF rewrite.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Signal::SIGKILL);
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Signal::SIGKILL);
        }
    }
}

/// The directory of the PostgreSQL server binaries.
pub fn pg_bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("postgres").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    found.sort();
    found.pop().expect("PostgreSQL server binaries (install postgresql-15)")
}

/// PostgreSQL refuses to run as root; when we are root it runs as the `postgres` user.
fn pg_user() -> Option<User> {
    if !geteuid().is_root() {
        return None;
    }
    Some(User::from_name("postgres").ok().flatten().expect("a 'postgres' user (install postgresql-15)"))
}

fn give_to(path: &Path, user: Option<&User>) {
    if let Some(u) = user {
        chown(path, Some(u.uid), Some(u.gid)).expect("chown to postgres");
    }
}

/// An initdb'd cluster made once per machine and copied for each server, which is much faster.
fn template(bindir: &Path, user: Option<&User>) -> PathBuf {
    let root = std::env::temp_dir().join(format!("wbc-pg-template-{}", geteuid()));
    let data = root.join("data");
    if data.join("PG_VERSION").exists() {
        return data;
    }
    let work = tempfile::Builder::new().prefix("wbc-pg-init-").tempdir().expect("tempdir").keep();
    give_to(&work, user);
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D").arg(work.join("data")).args(["-U", "wbc", "--auth=trust", "--no-sync", "-E", "UTF8", "--no-locale"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    as_service(&mut cmd, user);
    let out = cmd.output().expect("initdb runs");
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    // Another test may have won the race; either copy is good.
    if std::fs::rename(&work, &root).is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    data
}

/// A PostgreSQL server of our own, with superuser `wbc` and trust authentication.
pub struct PgServer {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    bindir: PathBuf,
    user: Option<User>,
    paused: bool,
    /// More `postgres` arguments, e.g. `-c ssl=on`.
    args: Vec<String>,
}

impl PgServer {
    pub fn start() -> Self {
        let mut server = Self::create();
        server.spawn();
        server
    }

    /// A copy of the template, not yet running.
    fn create() -> Self {
        let bindir = pg_bindir();
        let user = pg_user();
        let template = template(&bindir, user.as_ref());
        let dir = tempfile::Builder::new().prefix("wbc-pg-").tempdir().expect("tempdir");
        give_to(dir.path(), user.as_ref());
        let status = Command::new("cp").arg("-a").arg(&template).arg(dir.path().join("data")).status().expect("cp");
        assert!(status.success(), "copying the PostgreSQL template failed");
        Self { child: None, dir, port: free_port(), bindir, user, paused: false, args: Vec::new() }
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(self.bindir.join("postgres"));
        cmd.arg("-D").arg(self.dir.path().join("data")).arg("-p").arg(self.port.to_string());
        cmd.arg("-k").arg(self.dir.path()).args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        cmd.args(["-c", "full_page_writes=off", "-c", "max_connections=200"]).args(&self.args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        as_service(&mut cmd, self.user.as_ref());
        self.child = Some(cmd.spawn().expect("postgres runs"));
        wait_for_port(self.port, "postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "wbc", "-d", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "postgres was not ready within 30s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://wbc@127.0.0.1:{}/postgres", self.port)
    }

    /// Fast shutdown, as an operator's `pg_ctl stop -m fast`.
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Signal::SIGINT);
        }
    }

    /// Starts the server again with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freezes the server and every backend (SIGSTOP), as a host that hangs instead of refusing:
    /// connections stay open and the kernel accepts new ones, but nothing answers.
    pub fn pause(&mut self) {
        for pid in self.processes() {
            let _ = kill(pid, Signal::SIGSTOP);
        }
        self.paused = true;
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&mut self) {
        if std::mem::take(&mut self.paused) {
            for pid in self.processes() {
                let _ = kill(pid, Signal::SIGCONT);
            }
        }
    }

    /// The postmaster first (so that it forks no more), then its children, the backends.
    fn processes(&self) -> Vec<Pid> {
        let Some(root) = self.child.as_ref().map(|c| c.id() as i32) else { return Vec::new() };
        let mut pids = vec![Pid::from_raw(root)];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid …`, where comm may hold spaces and parentheses.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if ppid == Some(root) {
                pids.extend(entry.file_name().to_str().and_then(|p| p.parse().ok()).map(Pid::from_raw));
            }
        }
        pids
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Prometheus server of our own, with the given `scrape_configs` (YAML list items).
pub struct PrometheusServer {
    child: Option<Child>,
    _dir: TempDir,
    port: u16,
}

impl PrometheusServer {
    pub fn start(scrape_configs: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("wbc-prometheus-").tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        let yaml =
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}");
        std::fs::write(&config, yaml).expect("prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_service(&mut cmd, None);
        let child = cmd.spawn().expect("prometheus runs (install the prometheus package)");
        wait_for_port(port, "prometheus");
        Self { child: Some(child), _dir: dir, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Signal::SIGTERM);
        }
    }
}

#[derive(clap::Parser)]
struct PipelineCli {
    #[command(flatten)]
    pipeline: crate::PipelineArgs,
}

/// Pipeline settings from `(flag, value)` pairs, parsed as the binaries parse them.
pub fn pipeline(flags: &[(&str, &str)]) -> crate::Pipeline {
    use clap::Parser;
    let args =
        std::iter::once("wbc".to_owned()).chain(flags.iter().flat_map(|(k, v)| [format!("--{k}"), v.to_string()]));
    PipelineCli::parse_from(args).pipeline.validate().expect("valid pipeline")
}
