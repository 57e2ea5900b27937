//! One cell of the matrix: a point, an action, a load on the API and the worker as processes,
//! then every guarantee checked once the queue has drained.
use std::{
    collections::VecDeque,
    path::PathBuf,
    process::ExitStatus,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use serde_json::Value;
use wbc_core::{
    Store,
    testkit::{RedisServer, free_port},
};

use crate::{
    common::{
        ledger::{Ledger, client},
        proc::{Proc, aborted, api_exe},
    },
    scenario::{Action, Load, Point, Scenario, Target, start_load},
};

/// Generous limits for a loaded two-core machine; every wait polls and ends as soon as it can.
const START_LIMIT: Duration = Duration::from_secs(30);
const LOAD_LIMIT: Duration = Duration::from_secs(60);
const HIT_LIMIT: Duration = Duration::from_secs(60);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
const REPORT_LIMIT: Duration = Duration::from_secs(60);

/// One process of a cell, started again whenever it exits on its own.
pub struct Supervised {
    pub proc: Proc,
    /// `FAILPOINTS` of the next starts, in order; once empty, starts have none.
    stages: VecDeque<String>,
    pub exits: Vec<ExitStatus>,
    /// Set while the harness keeps the process down (e.g. until Redis is back).
    pub hold: bool,
}

impl Supervised {
    fn new(exe: PathBuf, name: &str, env: Vec<(String, String)>, stages: Vec<String>) -> Self {
        let port = free_port();
        let addr = if name == "api" { "LISTEN_ADDR" } else { "METRICS_ADDR" };
        let mut env = env;
        env.push((addr.into(), format!("127.0.0.1:{port}")));
        env.push(("WORKER_ID".into(), format!("fp-{name}-{port}")));
        let log = std::env::temp_dir().join(format!("wbc-failpoints-{name}-{port}.log"));
        Self { proc: Proc::new(exe, port, env, Some(log)), stages: stages.into(), exits: Vec::new(), hold: false }
    }

    /// Starts the process with the next stage's failpoints, or none once the stages are used up.
    pub fn start_next(&mut self) {
        let failpoints = self.stages.pop_front().unwrap_or_default();
        self.proc.start_with(&[("FAILPOINTS", &failpoints)]);
    }

    fn supervise(&mut self) {
        if let Some(status) = self.proc.exited() {
            self.exits.push(status);
        }
        if !self.proc.running() && !self.hold {
            self.start_next();
        }
    }
}

/// The processes and the ledger of one cell.
pub struct Cell {
    pub point: Point,
    pub action: Action,
    pub api: Supervised,
    pub worker: Supervised,
    pub ledger: Arc<Ledger>,
    http: reqwest::Client,
}

impl Cell {
    /// Starts the API and the worker; the target's starts carry the stage and then the point.
    pub fn start(point: Point, action: Action, lane: &Lane) -> Self {
        let (redis_url, pg_url) = (lane.redis.url(), lane.pg_url.clone());
        let mut env = point.scenario.settings();
        let token = ("ADMIN_TOKEN".into(), wbc_core::testkit::ADMIN_TOKEN.into());
        env.extend([("REDIS_URL".into(), redis_url), ("DATABASE_URL".into(), pg_url), token]);
        let mut own = Vec::new();
        if !point.stage.is_empty() || point.scenario == Scenario::RedisLoss {
            own.push(point.stage.to_owned());
        }
        own.push(point.failpoints(action));
        let (api_stages, worker_stages) = match point.target {
            Target::Api => (own, Vec::new()),
            Target::Worker => (Vec::new(), own),
        };
        let worker_exe = PathBuf::from(env!("CARGO_BIN_EXE_wbc-worker"));
        let mut cell = Self {
            point,
            action,
            api: Supervised::new(api_exe(), "api", env.clone(), api_stages),
            worker: Supervised::new(worker_exe, "worker", env, worker_stages),
            ledger: Arc::default(),
            http: client(Duration::from_secs(5)),
        };
        cell.api.start_next();
        cell.worker.start_next();
        cell
    }

    /// The process that carries the point.
    pub fn target(&self) -> &Supervised {
        match self.point.target {
            Target::Api => &self.api,
            Target::Worker => &self.worker,
        }
    }

    /// Restarts whatever exited, then polls `check` until it answers or `within` is over. `check`
    /// reads the cell and returns a future that owns what it needs, such as a [`Probe`].
    pub async fn until<T, F, Fut>(&mut self, within: Duration, mut check: F) -> Option<T>
    where
        F: FnMut(&Self, Probe) -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            self.api.supervise();
            self.worker.supervise();
            if let Some(v) = check(self, self.probe()).await {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// What a check needs to reach the API and the worker.
    pub fn probe(&self) -> Probe {
        Probe { http: self.http.clone(), api: self.api.proc.url(""), worker: self.worker.proc.url("") }
    }

    /// Waits until both processes answer /readyz.
    pub async fn serving(&mut self) -> bool {
        let ready =
            |_: &Self, p: Probe| async move { (p.ready(&p.api).await && p.ready(&p.worker).await).then_some(()) };
        self.until(START_LIMIT, ready).await.is_some()
    }

    /// Starts a load of `writes` attempts per writer.
    pub fn start_load(&self, writes: u64, first: u64) -> Load {
        let poison = self.point.scenario == Scenario::Poison;
        start_load(self.api.proc.url(""), self.ledger.clone(), writes, first, poison)
    }

    /// Waits for the end of a load, restarting crashed processes meanwhile.
    pub async fn load_done(&mut self, load: &Load) -> bool {
        let (all, finished) = (crate::scenario::WRITERS, load.finished.clone());
        let done = |_: &Self, _| std::future::ready((finished.load(Relaxed) == all).then_some(()));
        self.until(LOAD_LIMIT, done).await.is_some()
    }

    /// Runs a load of `writes` attempts per writer to its end.
    pub async fn load(&mut self, writes: u64, first: u64) -> bool {
        let load = self.start_load(writes, first);
        self.load_done(&load).await
    }

    /// Waits until the API has acknowledged `n` writes, or the target is down and held there.
    pub async fn acked(&mut self, n: u64) -> bool {
        let ledger = self.ledger.clone();
        let enough = move |c: &Self, _| {
            let held = c.target().hold && !c.target().proc.running();
            std::future::ready((ledger.acked.load(Relaxed) >= n || held).then_some(()))
        };
        self.until(LOAD_LIMIT, enough).await.is_some()
    }

    /// Whether the point fired as asked: a line of the target's log, and for a crash an exit by SIGABRT.
    fn was_hit(&self) -> bool {
        let target = self.target();
        let action = if self.action == Action::Crash { "abort" } else { "error" };
        let line = format!("failpoint {} fired: {action}", self.point.name);
        let crashed = self.action == Action::Error || target.exits.iter().any(aborted);
        crashed && target.proc.log_text().contains(&line)
    }

    /// Waits until the point has fired as asked.
    pub async fn hit(&mut self) -> Result<(), String> {
        match self.until(HIT_LIMIT, |c, _| std::future::ready(c.was_hit().then_some(()))).await {
            Some(()) => Ok(()),
            None => Err(format!("not hit within {HIT_LIMIT:?}")),
        }
    }

    /// Waits until no key is dirty or in flight; the last queue seen when it does not happen.
    pub async fn drained(&mut self) -> Result<(), Value> {
        let empty = |_: &Self, p: Probe| async move {
            let q = p.queue().await;
            (q["queue_size"] == 0 && q["in_flight"] == 0).then_some(())
        };
        match self.until(DRAIN_LIMIT, empty).await {
            Some(()) => Ok(()),
            None => Err(self.probe().queue().await),
        }
    }

    /// A loss of Redis data shows in /admin/queue and in a log line of a worker.
    pub async fn loss_reported(&mut self) -> Result<(), String> {
        let shown =
            |_: &Self, p: Probe| async move { (!p.queue().await["last_data_loss_at_ms"].is_null()).then_some(()) };
        if self.until(REPORT_LIMIT, shown).await.is_none() {
            return Err("loss not shown in /admin/queue".into());
        }
        let logged = |c: &Self, _| {
            std::future::ready(c.worker.proc.log_text().to_lowercase().contains("data loss").then_some(()))
        };
        if self.until(REPORT_LIMIT, logged).await.is_none() {
            return Err("loss not logged".into());
        }
        Ok(())
    }

    /// Exits that no point asked for.
    pub fn unexpected_exits(&self) -> Vec<String> {
        let all = self.api.exits.iter().map(|s| ("api", s)).chain(self.worker.exits.iter().map(|s| ("worker", s)));
        all.filter(|(_, s)| !aborted(s)).map(|(who, s)| format!("{who} exited: {s}")).collect()
    }

    /// Kills both processes.
    pub fn stop(&mut self) {
        self.api.proc.kill9();
        self.worker.proc.kill9();
    }

    /// The logs of both processes, for a cell that failed.
    pub fn logs(&self) -> String {
        format!("--- api log ---\n{}\n--- worker log ---\n{}", self.api.proc.log_text(), self.worker.proc.log_text())
    }
}

/// What a check needs to reach the processes, owned so that it borrows nothing of the cell.
#[derive(Clone)]
pub struct Probe {
    http: reqwest::Client,
    pub api: String,
    pub worker: String,
}

impl Probe {
    async fn ready(&self, base: &str) -> bool {
        self.http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    }

    /// `/admin/queue`, or `Null` while the API cannot answer.
    pub async fn queue(&self) -> Value {
        let Ok(r) = self.http.get(format!("{}/admin/queue", self.api)).send().await else { return Value::Null };
        r.json().await.unwrap_or_default()
    }
}

/// Connections to one lane's Redis and PostgreSQL, which its cells share one after another.
pub struct Lane {
    /// Killed and restarted by the Redis-outage scenario.
    pub redis: RedisServer,
    pub pg_url: String,
    pub pool: sqlx::PgPool,
    pub store: Store,
}

impl Lane {
    /// Connects to the lane's Redis and PostgreSQL.
    pub async fn connect(redis: RedisServer, pg_url: String) -> Self {
        let pool = sqlx::PgPool::connect(&pg_url).await.expect("postgres");
        let store = Store::connect(&wbc_core::endpoint::RedisEndpoint::new(redis.url())).await.expect("redis");
        Self { redis, pg_url, pool, store }
    }

    /// Empties Redis and PostgreSQL, so that a cell starts as on a new stack.
    pub async fn reset(&self) {
        self.flush_redis().await;
        // The tables exist once a process has migrated; the first cell of a lane finds none.
        for sql in ["TRUNCATE products, wbc_meta", "ALTER TABLE products DROP CONSTRAINT IF EXISTS poison"] {
            if let Err(e) = sqlx::query(sql).execute(&self.pool).await {
                assert!(e.to_string().contains("does not exist"), "{sql}: {e}");
            }
        }
    }

    /// FLUSHALL: Redis loses all of its data.
    pub async fn flush_redis(&self) {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut self.store.connection()).await.expect("FLUSHALL");
    }

    /// Makes writes of poison names fail for good, as a constraint violation does.
    pub async fn add_poison_constraint(&self) {
        let sql = format!(
            "ALTER TABLE products ADD CONSTRAINT poison CHECK (name NOT LIKE '{}%')",
            crate::scenario::POISON_PREFIX
        );
        sqlx::query(&sql).execute(&self.pool).await.expect("poison constraint");
    }
}
