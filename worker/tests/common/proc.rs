//! A `wbc-api` or `wbc-worker` process that can be killed, can crash, and can be started again
//! with the same environment and port.
use std::{
    os::unix::process::{CommandExt, ExitStatusExt},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
};

/// The `wbc-api` binary, which `cargo test -p wbc-worker` does not build: `make test` (the whole
/// workspace), `make chaos` and `make failpoints` build it first.
pub fn api_exe() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_wbc-worker")).with_file_name("wbc-api");
    assert!(exe.exists(), "{} is missing: run `cargo build -p wbc-api --all-features` first", exe.display());
    exe
}

/// A binary run with a cleared environment plus `env`; its output goes to `log`, or to the test's
/// stderr without one.
pub struct Proc {
    pub exe: PathBuf,
    pub env: Vec<(String, String)>,
    pub port: u16,
    pub log: Option<PathBuf>,
    child: Option<Child>,
}

impl Proc {
    /// A process not started yet.
    pub fn new(exe: PathBuf, port: u16, env: Vec<(String, String)>, log: Option<PathBuf>) -> Self {
        Self { exe, env, port, log, child: None }
    }

    /// Call from the test's own thread or a runtime worker thread only: the child dies with the
    /// thread that spawned it.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts with `extra` variables on top of the process's own environment.
    pub fn start_with(&mut self, extra: &[(&str, &str)]) {
        let mut cmd = Command::new(&self.exe);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).envs(self.env.iter().cloned());
        cmd.envs(extra.iter().copied());
        match &self.log {
            Some(path) => {
                let log = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("process log");
                cmd.stdout(log.try_clone().expect("process log")).stderr(log);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        // SAFETY: only an async-signal-safe prctl runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| Ok(nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?));
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("{} does not start: {e}", self.exe.display())));
    }

    /// Started and not known to have exited.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The exit status once the process has exited on its own; it is then no longer running.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())?;
        self.child = None;
        Some(status)
    }

    /// Panics if the process has exited on its own.
    pub fn assert_running(&mut self) {
        let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(status.is_none(), "{} (port {}) exited on its own: {status:?}", self.exe.display(), self.port);
    }

    /// `path` on the process's port.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the process wrote to its log, across restarts.
    pub fn log_text(&self) -> String {
        self.log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// Whether a process died of SIGABRT, as `std::process::abort` ends it.
pub fn aborted(status: &ExitStatus) -> bool {
    status.signal() == Some(nix::sys::signal::Signal::SIGABRT as i32)
}
