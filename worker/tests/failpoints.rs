//! The failpoint matrix: every named step of the queue protocol is crashed once (the process
//! aborts there and is started again) and failed a few times (the call returns an error there),
//! each under a small concurrent load; then every guarantee is checked: lost 0, older over newer
//! 0, cache equals PostgreSQL once drained, no key stuck in flight, capacity held, and a loss of
//! Redis data reported. Prints a table of points × outcomes and fails if any cell does.
//!
//! Runs the `wbc-api` binary, which `cargo test -p wbc-worker` does not rebuild: `make test`
//! builds the whole workspace first, `make failpoints` builds it too. FAILPOINTS_LANES sets how
//! many cells run at once (2), each lane on its own Redis and PostgreSQL; FAILPOINTS_ONLY runs
//! the points whose name contains it.
#[path = "failpoints/cell.rs"]
mod cell;
#[path = "failpoints/check.rs"]
mod check;
mod common;
#[path = "failpoints/scenario.rs"]
mod scenario;

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use cell::{Cell, Lane};
use scenario::{Action, Load, Point, Scenario, Target};
use wbc_core::testkit::{PgServer, RedisServer};

const fn point(name: &'static str, target: Target, scenario: Scenario) -> Point {
    Point { name, target, scenario, stage: "", with: "" }
}

/// Every named failpoint, with the scenario that reaches it.
const POINTS: &[Point] = &[
    point("store::after_claim", Target::Worker, Scenario::Plain),
    point("worker::after_read", Target::Worker, Scenario::Plain),
    point("worker::upsert", Target::Worker, Scenario::Plain),
    point("worker::after_commit", Target::Worker, Scenario::Plain),
    point("worker::after_ack", Target::Worker, Scenario::Plain),
    // A batch is handed back after a failed upsert.
    Point { with: "worker::upsert=3*return(error)", ..point("worker::release", Target::Worker, Scenario::Plain) },
    point("worker::before_dead_letter", Target::Worker, Scenario::Poison),
    point("worker::after_dead_letter", Target::Worker, Scenario::Poison),
    // A first start dies holding a batch, so that the reaper has a lease to hand back.
    Point { stage: "store::after_claim=1*return(abort)", ..point("worker::reap", Target::Worker, Scenario::Plain) },
    point("worker::loss_remembered_read", Target::Worker, Scenario::RedisLoss),
    point("worker::loss_checkpoint_raised", Target::Worker, Scenario::RedisLoss),
    point("worker::loss_floor_raised", Target::Worker, Scenario::RedisLoss),
    point("worker::loss_reported", Target::Worker, Scenario::RedisLoss),
    point("api::before_redis_write", Target::Api, Scenario::Plain),
    point("api::after_redis_write", Target::Api, Scenario::Plain),
    point("api::before_write_through", Target::Api, Scenario::Overflow),
    point("api::after_reserve", Target::Api, Scenario::Overflow),
    point("api::after_write_through_commit", Target::Api, Scenario::Overflow),
    point("api::after_redis_down_commit", Target::Api, Scenario::RedisDown),
];

/// What one cell found: the guarantees it broke (none when it passed).
struct Outcome {
    point: &'static str,
    action: Action,
    violations: Vec<String>,
    acked: u64,
    elapsed: Duration,
}

impl Outcome {
    /// `ok`, or the guarantees broken.
    fn verdict(&self) -> String {
        if self.violations.is_empty() { "ok".into() } else { self.violations.join("; ") }
    }
}

/// Drives a cell from the start of its processes to a drained queue; the violations seen on the
/// way and whether the queue drained.
async fn drive(cell: &mut Cell, lane: &mut Lane) -> (Vec<String>, bool) {
    let mut found = Vec::new();
    if !cell.serving().await {
        return (vec!["processes did not become ready".into()], false);
    }
    if cell.point.scenario == Scenario::Poison {
        lane.add_poison_constraint().await;
    }
    if cell.point.scenario == Scenario::RedisLoss && !lose_redis_data(cell, lane).await {
        return (vec!["the load before the loss did not persist".into()], false);
    }
    let load = cell.start_load(30, 1000);
    if cell.point.scenario == Scenario::RedisDown {
        found.extend(redis_outage(cell, lane, &load).await);
    }
    if !cell.load_done(&load).await {
        found.push("load did not finish".into());
    }
    if cell.point.scenario == Scenario::RedisDown {
        lane.redis.restart();
        cell.api.hold = false;
    }
    found.extend(cell.hit().await.err());
    let drained = cell.drained().await;
    if let Err(q) = &drained {
        found.push(format!("stuck: not drained, queue {q}"));
    }
    // Versions PostgreSQL issued without Redis reach Redis within a worker's round (the window the
    // README gives); the cache is compared once they have.
    let pool = lane.pool.clone();
    let applied = move |_: &Cell, _| {
        let pool = pool.clone();
        async move {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM wbc_fallback_versions").fetch_one(&pool).await.ok()?;
            (left == 0).then_some(())
        }
    };
    if cell.until(Duration::from_secs(60), applied).await.is_none() {
        found.push("versions issued without Redis never reached it".into());
    }
    if cell.point.scenario == Scenario::RedisLoss {
        found.extend(cell.loss_reported().await.err());
    }
    found.extend(cell.unexpected_exits());
    (found, drained.is_ok())
}

/// A first load under a worker without failpoints, persisted; then Redis loses its data and the
/// worker that carries the point starts. False when the first load did not persist.
async fn lose_redis_data(cell: &mut Cell, lane: &Lane) -> bool {
    if !cell.load(10, 0).await || cell.drained().await.is_err() {
        return false;
    }
    cell.worker.proc.kill9();
    lane.flush_redis().await;
    cell.worker.start_next();
    true
}

/// Once 40 writes are acknowledged, Redis goes down, and the load stops after 10 more (through
/// PostgreSQL), so that the writes of the outage are the last of their keys; Redis comes back with
/// its data (AOF always) after the load. A crashed API stays down meanwhile: it cannot start
/// without Redis.
async fn redis_outage(cell: &mut Cell, lane: &mut Lane, load: &Load) -> Vec<String> {
    let mut found = Vec::new();
    if !cell.acked(40).await {
        found.push("40 writes were not acknowledged before the outage".into());
    }
    cell.api.hold = true;
    lane.redis.kill9();
    found.extend(cell.hit().await.err());
    if !cell.acked(cell.ledger.acked.load(Relaxed) + 10).await {
        found.push("no write acknowledged during the outage".into());
    }
    load.stop.store(true, Relaxed);
    found
}

/// Runs one cell on a lane whose stores it empties first.
async fn run_cell(lane: &mut Lane, point: Point, action: Action) -> Outcome {
    let started = Instant::now();
    lane.reset().await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = check::sample_queue_size(lane.store.clone(), stop.clone());
    let mut cell = Cell::start(point, action, lane);
    let (mut violations, drained) = drive(&mut cell, lane).await;
    stop.store(true, Relaxed);
    let (max, capacity) = (sampler.await.expect("sampler"), point.scenario.capacity());
    if max > capacity {
        violations.push(format!("capacity: dirty+in flight reached {max} > {capacity}"));
    }
    cell.stop();
    if drained {
        violations.extend(check::guarantees(lane, &cell.ledger).await);
    }
    if !violations.is_empty() && std::env::var_os("FAILPOINTS_LOGS").is_some() {
        eprintln!("{} / {}:\n{}", point.name, action.label(), cell.logs());
    }
    Outcome {
        point: point.name,
        action,
        violations,
        acked: cell.ledger.acked.load(Relaxed),
        elapsed: started.elapsed(),
    }
}

/// Fails fast when a binary was built without the failpoints feature: its points would never fire.
fn assert_built_with_failpoints() {
    let worker = std::path::PathBuf::from(env!("CARGO_BIN_EXE_wbc-worker"));
    for (exe, name) in [(common::proc::api_exe(), "api::before_redis_write"), (worker, "worker::after_read")] {
        let bytes = std::fs::read(&exe).expect("binary");
        let found = bytes.windows(name.len()).any(|w| w == name.as_bytes());
        assert!(
            found,
            "{} has no failpoints: build it with `cargo build -p wbc-api -p wbc-worker --all-features`",
            exe.display()
        );
    }
}

fn print_table(outcomes: &[Outcome], elapsed: Duration) {
    let cell = |p: &str, a: Action| outcomes.iter().find(|o| o.point == p && o.action == a);
    eprintln!("\n=== failpoint matrix ({} cells, {:.0} s) ===", outcomes.len(), elapsed.as_secs_f64());
    eprintln!("{:<34} {:<8} outcome", "point", "action");
    for p in POINTS {
        for a in [Action::Crash, Action::Error] {
            let Some(o) = cell(p.name, a) else { continue };
            let detail = format!("[{} acked, {:.1} s]", o.acked, o.elapsed.as_secs_f64());
            eprintln!("{:<34} {:<8} {} {detail}", p.name, a.label(), o.verdict());
        }
    }
}

/// Runs cells from `queue` one after another on one Redis and PostgreSQL until none is left.
async fn run_lane(redis: RedisServer, pg_url: String, queue: Arc<Mutex<VecDeque<(Point, Action)>>>) -> Vec<Outcome> {
    let mut lane = Lane::connect(redis, pg_url).await;
    let (next, mut outcomes) = (|| queue.lock().unwrap().pop_front(), Vec::new());
    while let Some((point, action)) = next() {
        let o = run_cell(&mut lane, point, action).await;
        eprintln!("failpoints: {} / {}: {} ({:.1} s)", o.point, o.action.label(), o.verdict(), o.elapsed.as_secs_f64());
        outcomes.push(o);
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_failpoint_crashed_or_failed_under_load_keeps_every_guarantee() {
    assert_built_with_failpoints();
    let lanes: usize = std::env::var("FAILPOINTS_LANES").ok().and_then(|v| v.parse().ok()).unwrap_or(2).max(1);
    let only = std::env::var("FAILPOINTS_ONLY").unwrap_or_default();
    let cells: VecDeque<(Point, Action)> = POINTS
        .iter()
        .filter(|p| p.name.contains(&only))
        .flat_map(|p| [(*p, Action::Crash), (*p, Action::Error)])
        .collect();
    let started = Instant::now();
    // The servers start on this thread, which outlives every lane: a server dies with the thread
    // that started it. Each lane owns its Redis, which the outage scenario restarts.
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let pgs: Vec<PgServer> = (0..lanes).map(|_| PgServer::start()).collect();
    let queue = Arc::new(Mutex::new(cells));
    let mut tasks = tokio::task::JoinSet::new();
    for pg in &pgs {
        tasks.spawn(run_lane(RedisServer::start_with(&aof), pg.url(), queue.clone()));
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        outcomes.extend(done.expect("a lane panicked"));
    }
    print_table(&outcomes, started.elapsed());
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !o.violations.is_empty())
        .map(|o| format!("{} / {}", o.point, o.action.label()))
        .collect();
    assert!(failed.is_empty(), "{} of {} cells broke a guarantee: {failed:?}", failed.len(), outcomes.len());
}

/// The `failpoint!("…")` names in the sources of `dir` and below.
fn failpoints_in(dir: &std::path::Path, names: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            failpoints_in(&path, names);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source file");
            for (_, rest) in text.match_indices("failpoint!(\"").map(|(at, m)| (at, &text[at + m.len()..])) {
                names.extend(rest.split('"').next().map(str::to_owned));
            }
        }
    }
}

#[test]
fn every_failpoint_in_the_code_has_a_row_in_the_matrix() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut names = Vec::new();
    for krate in ["core", "worker", "api"] {
        failpoints_in(&root.join(krate).join("src"), &mut names);
    }
    names.sort();
    names.dedup();
    let mut rows: Vec<String> = POINTS.iter().map(|p| p.name.to_owned()).collect();
    rows.sort();
    assert_eq!(names, rows, "the failpoints in the code and the rows of POINTS differ");
}
