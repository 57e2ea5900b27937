//! The chaos suite: a mixed write load over HTTP while workers, the API, PostgreSQL and Redis are
//! killed and restarted; afterwards every acknowledged write must be in PostgreSQL or dead-lettered.
//! Sized by CHAOS_DURATION_SECS, CHAOS_WORKERS, CHAOS_KEYS, CHAOS_WRITERS (`make chaos DURATION=60 …`).
//! It runs the `wbc-api` binary, which `cargo test -p wbc-worker` does not rebuild; `make chaos` does.
mod common;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use common::{
    ledger::{Fields, Ledger, Verdict, Write, client, verify, write},
    metric_value,
    proc::{Proc, api_exe},
    wait_until,
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use redis::AsyncCommands;
use serde_json::Value;
use wbc_core::{
    store::keys,
    testkit::{ADMIN_TOKEN, PgServer, RedisServer, free_port},
};

const HOT_KEYS: usize = 8;
const MAX_WRITES_PER_WRITER: u64 = 10_000_000;
const WRITER_LIMIT: Duration = Duration::from_secs(3600);
const PG_OUTAGE: Duration = Duration::from_secs(3);
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

struct Size {
    duration: Duration,
    workers: usize,
    keys: usize,
    writers: usize,
    seed: u64,
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        _ => default,
    }
}

impl Size {
    fn from_env() -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        Self {
            duration: Duration::from_secs(env_num("CHAOS_DURATION_SECS", 20).max(1)),
            // One worker must survive each worker kill.
            workers: env_num("CHAOS_WORKERS", 2).max(2) as usize,
            keys: env_num("CHAOS_KEYS", 200).max(1) as usize,
            writers: env_num("CHAOS_WRITERS", 8).max(1) as usize,
            seed: env_num("CHAOS_SEED", now.as_secs()),
        }
    }
}

/// Creates, updates of a few hot keys, updates of any key and deletes; every value is unique.
fn next_write(rng: &mut StdRng, writer: usize, seq: u64, keys: usize) -> (Option<String>, Write) {
    let fields = Some(Fields::new(
        format!("w{writer}-{seq}"),
        wbc_core::Price::from_cents((seq % 100_000) as i64).unwrap(),
        seq as i64,
    ));
    let any = format!("k-{}", rng.random_range(0..keys));
    match rng.random_range(0..100) {
        0..10 => (None, fields),
        10..50 => (Some(format!("k-{}", rng.random_range(0..keys.min(HOT_KEYS)))), fields),
        50..85 => (Some(any), fields),
        _ => (Some(any), None),
    }
}

/// One writer of the load: writes until told to stop, pausing briefly after each failure.
async fn writer(w: usize, keys: usize, mut rng: StdRng, api: String, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let (http, deadline) = (client(Duration::from_secs(10)), Instant::now() + WRITER_LIMIT);
    for seq in 0..MAX_WRITES_PER_WRITER {
        if stop.load(Relaxed) || Instant::now() > deadline {
            break;
        }
        let (id, fields) = next_write(&mut rng, w, seq, keys);
        if !write(&http, &api, id.as_deref(), fields, &ledger).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Time from the repair of a fault until the system served again, and until it persisted again.
type Recovery = (Duration, Duration);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    WorkerKill,
    ApiRestart,
    PostgresOutage,
    RedisRestart,
}

/// Redis with AOF fsynced per write, PostgreSQL, the API and the workers as processes.
struct Chaos {
    redis: RedisServer,
    pg: PgServer,
    api: Proc,
    workers: Vec<Proc>,
    http: reqwest::Client,
    probes: u64,
    /// `wbc_worker_rows_stale_total` of killed workers, scraped just before each kill.
    stale_of_killed: f64,
    /// Worker kills that left claimed keys stranded under the dead worker's leases.
    kills_mid_flush: usize,
}

impl Chaos {
    fn start(workers: usize) -> Self {
        let (worker_exe, api_exe) = (PathBuf::from(env!("CARGO_BIN_EXE_wbc-worker")), api_exe());
        let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
        let pg = PgServer::start();
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into());
        let shared = [
            ("REDIS_URL", redis.url()),
            ("DATABASE_URL", pg.url()),
            ("RUST_LOG", log),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ];
        // Short leases and retry delays, so that the system recovers within the run.
        let tuning = [("FLUSH_INTERVAL", "50ms"), ("LEASE_TIMEOUT", "1s"), ("RETRY_MAX_DELAY", "1s")];
        let env = |extra: &[(&str, String)]| -> Vec<(String, String)> {
            let tuning = tuning.iter().map(|(k, v)| (*k, v.to_string()));
            shared.iter().cloned().chain(tuning).chain(extra.iter().cloned()).map(|(k, v)| (k.to_owned(), v)).collect()
        };
        let port = free_port();
        let api = Proc::new(api_exe, port, env(&[("LISTEN_ADDR", format!("127.0.0.1:{port}"))]), None);
        let workers = (0..workers).map(|i| {
            let (port, id) = (free_port(), format!("chaos-w{i}"));
            let env = env(&[("METRICS_ADDR", format!("127.0.0.1:{port}")), ("WORKER_ID", id)]);
            Proc::new(worker_exe.clone(), port, env, None)
        });
        let (http, workers) = (client(Duration::from_secs(5)), workers.collect());
        let mut chaos = Self { redis, pg, api, workers, http, probes: 0, stale_of_killed: 0.0, kills_mid_flush: 0 };
        chaos.api.start();
        chaos.workers.iter_mut().for_each(Proc::start);
        chaos
    }

    /// Whether `worker` holds leases within `within`; polled tightly, as a flush takes milliseconds.
    async fn holding_leases(&self, worker: &str, within: Duration) -> bool {
        let client = redis::Client::open(self.redis.url()).unwrap();
        let Ok(mut redis) = client.get_multiplexed_async_connection().await else { return false };
        let deadline = Instant::now() + within;
        loop {
            // A batch is named after the worker that claimed it: `{worker}/…`.
            let batches: Vec<String> = redis.zrange(keys::LEASES, 0, -1).await.unwrap_or_default();
            if batches.iter().any(|b| b.strip_prefix(worker).is_some_and(|rest| rest.starts_with('/'))) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::task::yield_now().await;
        }
    }

    async fn ready(&self, proc: &Proc) -> bool {
        self.http.get(proc.url("/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    }

    /// Waits until every process is ready and a probe write through the API is acknowledged.
    async fn serving(&mut self, ledger: &Ledger) {
        let deadline = Instant::now() + RECOVERY_LIMIT;
        loop {
            self.api.assert_running();
            self.workers.iter_mut().for_each(Proc::assert_running);
            let mut ready = self.ready(&self.api).await;
            for w in &self.workers {
                ready = ready && self.ready(w).await;
            }
            if ready {
                self.probes += 1;
                let fields = Some(Fields::new(
                    format!("probe-{}", self.probes),
                    wbc_core::Price::from_cents(100).unwrap(),
                    self.probes as i64,
                ));
                if write(&self.http, &self.api.url(""), Some("probe"), fields, ledger).await {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the system did not recover within {RECOVERY_LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every write acknowledged before `since` is persisted: the backlog of the fault
    /// is flushed and the leases of a killed worker are reaped.
    async fn caught_up(&self, since: Instant) {
        let caught_up = wait_until(RECOVERY_LIMIT, || async {
            let age = self.queue().await["oldest_unpersisted_age_ms"].clone();
            (age.is_null() || age.as_u64().is_some_and(|ms| ms < since.elapsed().as_millis() as u64)).then_some(())
        })
        .await;
        assert!(caught_up.is_some(), "persistence did not catch up within {RECOVERY_LIMIT:?}: {}", self.queue().await);
    }

    /// Injects one fault and repairs it; returns the times from the repair until the system
    /// serves again and until persistence has caught up.
    async fn inject(&mut self, fault: Fault, rng: &mut StdRng, ledger: &Ledger) -> Recovery {
        let w = rng.random_range(0..self.workers.len());
        match fault {
            Fault::WorkerKill => {
                // Its counters die with it.
                self.stale_of_killed += stale_rows(&self.http, &self.workers[w]).await;
                let id = format!("chaos-w{w}");
                self.holding_leases(&id, Duration::from_secs(2)).await;
                self.workers[w].kill9();
                self.kills_mid_flush += self.holding_leases(&id, Duration::ZERO).await as usize;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Fault::ApiRestart => self.api.kill9(),
            Fault::PostgresOutage => {
                self.pg.stop();
                tokio::time::sleep(PG_OUTAGE).await;
            }
            Fault::RedisRestart => self.redis.kill9(),
        }
        let repaired = Instant::now();
        match fault {
            Fault::WorkerKill => self.workers[w].start(),
            Fault::ApiRestart => self.api.start(),
            Fault::PostgresOutage => self.pg.restart(),
            Fault::RedisRestart => self.redis.restart(),
        }
        self.serving(ledger).await;
        let serving = repaired.elapsed();
        self.caught_up(repaired).await;
        (serving, repaired.elapsed())
    }

    /// Every kind at least once, then shuffled rounds of all kinds until the duration is over.
    async fn inject_faults(&mut self, size: &Size, ledger: &Ledger) -> Vec<(Fault, Recovery)> {
        let mut rng = StdRng::seed_from_u64(size.seed);
        let all = [Fault::WorkerKill, Fault::ApiRestart, Fault::PostgresOutage, Fault::RedisRestart];
        let (start, mut order, mut done) = (Instant::now(), Vec::new(), Vec::new());
        while (done.len() < all.len() || start.elapsed() < size.duration) && done.len() < 10_000 {
            if order.is_empty() {
                order = all.to_vec();
                order.shuffle(&mut rng);
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
            let fault = order.pop().unwrap();
            let recovery = self.inject(fault, &mut rng, ledger).await;
            let (at, (serving, caught_up)) = (start.elapsed().as_secs_f64(), recovery);
            println!("chaos: {at:>6.1}s {fault:?}: serving after {serving:.2?}, caught up after {caught_up:.2?}");
            done.push((fault, recovery));
        }
        done
    }

    async fn queue(&self) -> Value {
        let Ok(r) = self.http.get(self.api.url("/admin/queue")).send().await else { return Value::Null };
        r.json().await.unwrap_or_default()
    }

    async fn drained(&self) -> Duration {
        let start = Instant::now();
        let drained = wait_until(DRAIN_LIMIT, || async {
            let q = self.queue().await;
            (q["queue_size"] == 0 && q["in_flight"] == 0).then_some(())
        })
        .await;
        assert!(drained.is_some(), "queue did not drain within {DRAIN_LIMIT:?}: {}", self.queue().await);
        start.elapsed()
    }
}

async fn stale_rows(http: &reqwest::Client, worker: &Proc) -> f64 {
    let Ok(r) = http.get(worker.url("/metrics")).send().await else { return 0.0 };
    metric_value(&r.text().await.unwrap_or_default(), "wbc_worker_rows_stale_total").unwrap_or(0.0)
}

/// What the chaos run measured besides the verdict.
#[derive(Default)]
struct Measured {
    drain: Duration,
    /// Rows written again (`wbc_worker_rows_stale_total` of every worker, killed ones included).
    duplicates: f64,
    data_loss_at: Value,
    kills_mid_flush: usize,
}

fn summary(size: &Size, load: Duration, ledger: &Ledger, faults: &[(Fault, Recovery)], v: &Verdict, m: &Measured) {
    let failed = ledger.failed.lock().unwrap();
    let mut by_kind: BTreeMap<Fault, Vec<Recovery>> = BTreeMap::new();
    faults.iter().for_each(|(f, r)| by_kind.entry(*f).or_default().push(*r));
    let max_avg = |ds: Vec<Duration>| {
        let avg = ds.iter().sum::<Duration>().as_secs_f64() / ds.len() as f64;
        format!("{:.2}/{avg:.2} s", ds.iter().max().unwrap().as_secs_f64())
    };
    println!("\n=== chaos summary (seed {}) ===", size.seed);
    println!("{:<34} {:.1} s", "duration of load", load.as_secs_f64());
    println!("{:<34} {} writers, {} workers, {} keys", "size", size.writers, size.workers, size.keys);
    println!("{:<34} {}", "writes acknowledged", ledger.acked.load(Relaxed));
    println!("{:<34} {} {failed:?}", "writes failed (not acknowledged)", failed.values().sum::<u64>());
    for (kind, rs) in &by_kind {
        let (serving, caught_up) =
            (max_avg(rs.iter().map(|r| r.0).collect()), max_avg(rs.iter().map(|r| r.1).collect()));
        let kind = format!("fault {kind:?}");
        println!("{kind:<34} {:>3} injected, serving max/avg {serving}, caught up max/avg {caught_up}", rs.len());
    }
    println!("{:<34} {}", "worker kills with keys in flight", m.kills_mid_flush);
    println!("{:<34} {} (wbc_worker_rows_stale_total)", "duplicates written", m.duplicates);
    println!("{:<34} {:.2} s", "drain after the load", m.drain.as_secs_f64());
    println!("{:<34} {}", "Redis data loss reported at (ms)", m.data_loss_at);
    println!("(recovery, from the restart: serving = every /readyz 200 and a probe write acknowledged;");
    println!(" caught up = every write acknowledged before the restart is in PostgreSQL)");
    println!("verdict: {}\n", v.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_of_kills_and_restarts_loses_no_acknowledged_write() {
    let size = Size::from_env();
    // Blocking restarts run on this thread, never on a runtime worker: the servers die with the
    // thread that started them, and the writers must keep running meanwhile.
    let mut chaos = Chaos::start(size.workers);
    let ledger = Arc::new(Ledger::default());
    chaos.serving(&ledger).await;
    let (stop, started) = (Arc::new(AtomicBool::new(false)), Instant::now());
    let writers: Vec<_> = (0..size.writers)
        .map(|w| {
            let rng = StdRng::seed_from_u64(size.seed.wrapping_add(w as u64));
            tokio::spawn(writer(w, size.keys, rng, chaos.api.url(""), ledger.clone(), stop.clone()))
        })
        .collect();
    let faults = chaos.inject_faults(&size, &ledger).await;
    stop.store(true, Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let load = started.elapsed();
    chaos.serving(&ledger).await;
    let drain = chaos.drained().await;
    let pool = sqlx::PgPool::connect(&chaos.pg.url()).await.expect("postgres");
    let store =
        wbc_core::Store::connect(&wbc_core::endpoint::RedisEndpoint::new(chaos.redis.url())).await.expect("redis");
    let verdict = verify(&pool, &store, &ledger).await;
    let mut measured = Measured { drain, duplicates: chaos.stale_of_killed, ..Measured::default() };
    for w in &chaos.workers {
        measured.duplicates += stale_rows(&chaos.http, w).await;
    }
    measured.data_loss_at = chaos.queue().await["last_data_loss_at_ms"].clone();
    measured.kills_mid_flush = chaos.kills_mid_flush;
    summary(&size, load, &ledger, &faults, &verdict, &measured);
    assert!(verdict.holds(), "{}", verdict.summary());
    for kind in [Fault::WorkerKill, Fault::ApiRestart, Fault::PostgresOutage, Fault::RedisRestart] {
        assert!(faults.iter().any(|(f, _)| *f == kind), "no {kind:?} was injected");
    }
    let refused = ledger.failed.lock().unwrap().keys().filter(|r| r.starts_with("HTTP 4") && *r != "HTTP 408").count();
    assert_eq!(refused, 0, "the API refused writes as invalid: the load is broken");
}
