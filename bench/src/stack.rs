//! The system under test: Redis and PostgreSQL of our own (testkit), and the release binaries
//! wbc-api and wbc-worker as child processes configured by environment variables.
use std::{
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::time::{Instant, sleep};
use wbc_core::{
    PgPool, Store, db,
    testkit::{PgServer, RedisServer, free_port},
};

use crate::{Error, Result, http::get_text};

/// Where wbc-api and wbc-worker are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub api: PathBuf,
    pub worker: PathBuf,
}

impl Binaries {
    /// The given directory, or the one this binary runs from (the same target dir and profile).
    pub fn locate(dir: Option<&Path>) -> Result<Self> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let hint = "build them first: cargo build --release -p wbc-api -p wbc-worker (make bench does)";
        let api = dir.join("wbc-api");
        let worker = dir.join("wbc-worker");
        for (what, path) in [("wbc-api binary", &api), ("wbc-worker binary", &worker)] {
            if !path.exists() {
                return Err(Error::Missing { what, path: path.clone(), hint });
            }
        }
        Ok(Self { api, worker })
    }
}

/// The pipeline settings given to the API and the worker.
#[derive(Clone, Debug)]
pub struct PipelineEnv {
    pub flush_interval: Duration,
    pub batch_size: u32,
    pub queue_capacity: u64,
    /// FLUSH_CONCURRENCY of the worker.
    pub flush_concurrency: u16,
}

/// Redis, PostgreSQL (schema applied) and connections to both.
pub struct Stack {
    pub store: Store,
    pub pool: PgPool,
    pub redis: RedisServer,
    pub pg: PgServer,
    bins: Binaries,
    logs: PathBuf,
}

impl Stack {
    /// Starts fresh servers. Call it on the main thread: testkit servers die with the thread that
    /// started them, and the bench's runtime runs every task on the main thread.
    pub async fn start(bins: &Binaries, logs: &Path) -> Result<Self> {
        let redis = RedisServer::start();
        let pg = PgServer::start();
        let store = Store::connect(&wbc_core::endpoint::RedisEndpoint::new(redis.url())).await?;
        let pool = db::connect(&pg.url(), 4, Duration::from_secs(30)).await?;
        db::migrate(&pool).await?;
        std::fs::create_dir_all(logs)?;
        Ok(Self { store, pool, redis, pg, bins: bins.clone(), logs: logs.to_path_buf() })
    }

    /// Starts wbc-api in `mode` (`write-behind` or `write-through`) and waits until it is ready.
    pub async fn api(&self, name: &str, mode: &str, pipeline: &PipelineEnv) -> Result<Service> {
        self.spawn(name, &self.bins.api, "LISTEN_ADDR", mode, pipeline).await
    }

    /// Starts wbc-worker and waits until it is ready.
    pub async fn worker(&self, name: &str, pipeline: &PipelineEnv) -> Result<Service> {
        self.spawn(name, &self.bins.worker, "METRICS_ADDR", "write-behind", pipeline).await
    }

    async fn spawn(
        &self,
        name: &str,
        binary: &Path,
        addr_var: &str,
        mode: &str,
        pipeline: &PipelineEnv,
    ) -> Result<Service> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = self.logs.join(format!("{name}.log"));
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env(addr_var, addr.to_string())
            .env("REDIS_URL", self.redis.url())
            .env("DATABASE_URL", self.pg.url())
            .env("WRITE_MODE", mode)
            .env("FLUSH_INTERVAL", humantime::format_duration(pipeline.flush_interval).to_string())
            .env("BATCH_SIZE", pipeline.batch_size.to_string())
            .env("QUEUE_CAPACITY", pipeline.queue_capacity.to_string())
            .env("FLUSH_CONCURRENCY", pipeline.flush_concurrency.to_string())
            .env("WORKER_ID", name)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?);
        // If the bench dies (Ctrl-C), its children go with it instead of retrying forever.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                Ok(())
            });
        }
        let mut service = Service { name: name.to_owned(), addr, child: cmd.spawn()?, log };
        service.wait_ready().await?;
        Ok(service)
    }

    /// The PostgreSQL server's port (the testkit exposes only its URL).
    pub fn pg_port(&self) -> u16 {
        let url = self.pg.url();
        let after_host = url.rsplit_once(':').map_or("", |(_, rest)| rest);
        after_host.split('/').next().and_then(|p| p.parse().ok()).unwrap_or(5432)
    }

    /// Redis `used_memory`, in bytes.
    pub async fn redis_used_memory(&self) -> Result<u64> {
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut self.store.connection()).await?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::Tool { tool: "redis INFO", reason: "no used_memory".into() })
    }

    /// Waits until no key is dirty or in flight; returns how long that took.
    pub async fn wait_drained(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let stats = self.store.queue_stats().await?;
            if stats.queue_size == 0 && stats.in_flight == 0 {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(Error::Timeout(format!("queue not drained within {timeout:?}: {stats:?}")));
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A running wbc-api or wbc-worker; stopped with SIGTERM when dropped.
pub struct Service {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Service {
    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = get_text(self.addr, "/readyz").await {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(self.failure(&format!("exited with {status}")));
            }
            if Instant::now() > deadline {
                return Err(self.failure("not ready within 60s"));
            }
            sleep(Duration::from_millis(25)).await;
        }
    }

    fn failure(&self, what: &str) -> Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Error::Service {
            name: self.name.clone(),
            reason: format!("{what}; log {}:\n{}", self.log.display(), tail.join("\n")),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        Ok(get_text(self.addr, "/metrics").await?.1)
    }

    /// Peak resident set size so far (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
