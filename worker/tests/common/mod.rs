//! A whole stack for integration tests: real Redis and PostgreSQL, the API in-process and
//! worker processes that can be killed.
#![allow(dead_code)]

pub mod ledger;
pub mod proc;
pub mod proxy;

use std::{
    collections::HashMap,
    future::Future,
    process::{Child, Command},
    time::{Duration, Instant},
};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use wbc_core::{
    StoreArgs,
    testkit::{ADMIN_TOKEN, PgServer, RedisServer, free_port, pipeline},
};

pub struct Stack {
    pub redis: RedisServer,
    pub pg: PgServer,
    pub api: String,
    pub http: reqwest::Client,
    pub pool: wbc_core::PgPool,
    /// The same flags go to the API and to every worker.
    pub flags: Vec<(String, String)>,
    /// How the stack's own API reaches the stores.
    store: StoreArgs,
    api_task: tokio::task::JoinHandle<()>,
}

impl Stack {
    pub async fn start(flags: &[(&str, &str)]) -> Self {
        Self::start_with_redis(RedisServer::start(), flags).await
    }

    pub async fn start_with_redis(redis: RedisServer, flags: &[(&str, &str)]) -> Self {
        let pg = PgServer::start();
        let store = store_args(&redis, &pg);
        Self::start_with_stores(redis, pg, store, flags).await
    }

    /// A stack on these servers, which its API reaches as `store` says (TLS, credentials).
    pub async fn start_with_stores(redis: RedisServer, pg: PgServer, store: StoreArgs, flags: &[(&str, &str)]) -> Self {
        let flags: Vec<(String, String)> = flags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (api, pool, api_task) = serve_api(&store, &flags).await;
        Self {
            redis,
            pg,
            api,
            http: reqwest::Client::builder().default_headers(admin_headers()).build().unwrap(),
            pool,
            flags,
            store,
            api_task,
        }
    }

    /// The stores as the stack's own API reaches them; a test may change a field for another API.
    pub fn store_args(&self) -> StoreArgs {
        self.store.clone()
    }

    /// Another API process of the same deployment (in-process, with the stack's flags), as a second
    /// pod would be; it stops when the handle drops.
    pub async fn another_api(&self, store: &StoreArgs) -> OtherApi {
        let (url, _, task) = serve_api(store, &self.flags).await;
        OtherApi { url, task }
    }

    pub fn spawn_worker(&self, name: &str) -> WorkerProc {
        WorkerProc::spawn(self, name, &[])
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.redis.url()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    pub async fn put(&self, id: &str, body: Value) -> (u16, Value) {
        let r = self.http.put(format!("{}/products/{id}", self.api)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.api)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn queue(&self) -> Value {
        self.get_json("/admin/queue").await.1
    }

    /// Waits until no key is dirty or in flight.
    pub async fn drained(&self, within: Duration) {
        let q = wait_until(within, || async {
            let q = self.queue().await;
            (q["queue_size"] == 0 && q["in_flight"] == 0).then_some(q)
        })
        .await;
        assert!(q.is_some(), "queue did not drain within {within:?}: {}", self.queue().await);
    }

    /// Makes every insert into `products` hang for 30 s, so that a batch stays in flight.
    pub async fn slow_inserts(&self) {
        sqlx::raw_sql(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN PERFORM pg_sleep(30); RETURN NULL; END'; \
             CREATE TRIGGER slow AFTER INSERT ON products FOR EACH STATEMENT EXECUTE FUNCTION slow()",
        )
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Makes PostgreSQL refuse, for good, every product named `poison` (constraint `no_poison`).
    pub async fn refuse_poison(&self) {
        sqlx::query("ALTER TABLE products ADD CONSTRAINT no_poison CHECK (name <> 'poison')")
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Every row PostgreSQL holds: id -> (version, name, quantity, deleted).
    pub async fn rows(&self) -> HashMap<String, (i64, String, i64, bool)> {
        let rows: Vec<(String, i64, String, i32, bool)> =
            sqlx::query_as("SELECT id, version, name, quantity, deleted FROM products")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        rows.into_iter().map(|(id, v, n, q, d)| (id, (v, n, q as i64, d))).collect()
    }
}

fn store_args(redis: &RedisServer, pg: &PgServer) -> StoreArgs {
    StoreArgs { database_max_connections: 20, ..StoreArgs::new(redis.url(), pg.url()) }
}

async fn serve_api(
    store: &StoreArgs,
    flags: &[(String, String)],
) -> (String, wbc_core::PgPool, tokio::task::JoinHandle<()>) {
    let flags: Vec<(&str, &str)> = flags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (state, ops) = wbc_api::connect(store, pipeline(&flags)).await.expect("api connects");
    let pool = state.pool.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let access = wbc_api::Access::new(Some(ADMIN_TOKEN), None).expect("test token");
    let app = wbc_api::app(state, ops, &access, Duration::from_secs(30));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, pool, task)
}

/// The admin token as a header, which the tests' clients send with every request, as callers of
/// `/admin/*` must.
pub fn admin_headers() -> reqwest::header::HeaderMap {
    let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}")).unwrap();
    reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, bearer)])
}

/// An API besides the stack's own, stopped on drop.
pub struct OtherApi {
    /// Its base URL, like `Stack::api`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtherApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.api_task.abort();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or gives up after `within`.
pub async fn wait_until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn product(name: &str, quantity: i64) -> Value {
    json!({ "name": name, "price": 9.99, "quantity": quantity })
}

/// A `wbc-worker` process.
pub struct WorkerProc {
    child: Option<Child>,
    pub metrics_url: String,
    env: Vec<(String, String)>,
    /// The worker's output (its log), across restarts.
    pub log: std::path::PathBuf,
}

impl WorkerProc {
    pub fn spawn(stack: &Stack, name: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut env: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), stack.redis.url()),
            ("DATABASE_URL".into(), stack.pg.url()),
            ("METRICS_ADDR".into(), format!("127.0.0.1:{port}")),
            ("WORKER_ID".into(), name.into()),
            ("RUST_LOG".into(), std::env::var("WBC_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into())),
        ];
        for (k, v) in &stack.flags {
            env.push((k.to_uppercase().replace('-', "_"), v.clone()));
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let log = std::env::temp_dir().join(format!("wbc-worker-{name}-{port}.log"));
        let mut w = Self { child: None, metrics_url: format!("http://127.0.0.1:{port}/metrics"), env, log };
        w.start();
        w
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wbc-worker"));
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("worker log");
        let err = log.try_clone().expect("worker log");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v))).stdout(log).stderr(err);
        self.child = Some(cmd.spawn().expect("worker starts"));
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited cleanly.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let mut c = self.child.take().expect("running");
        kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = c.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        c.kill().ok();
        c.wait().ok();
        false
    }

    /// The value of a metric sample (the first line that starts with `series`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(&self.metrics_url).await.ok()?.text().await.ok()?;
        metric_value(&text, series)
    }
}

pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
    })
}

impl WorkerProc {
    /// Waits until the worker answers /readyz with 200.
    pub async fn ready(&self) {
        let url = self.metrics_url.replace("/metrics", "/readyz");
        let ok = wait_until(Duration::from_secs(60), || async {
            reqwest::get(&url).await.ok().filter(|r| r.status() == 200).map(|_| ())
        })
        .await;
        assert!(ok.is_some(), "worker not ready: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- log of worker ({}) ---\n{}", self.log.display(), self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
