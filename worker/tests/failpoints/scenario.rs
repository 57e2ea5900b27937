//! What one cell of the matrix sets up: which process carries the point, the settings and the
//! load that make the protocol reach it, and the action the point takes.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::common::ledger::{Fields, Ledger, Write, client, write};

/// Keys the load writes, more than the queue's capacity.
pub const KEYS: usize = 20;
/// Concurrent writers of a load.
pub const WRITERS: usize = 4;
/// Names that break the CHECK constraint of the poison scenario.
pub const POISON_PREFIX: &str = "poison";

/// The process a point lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Worker,
    Api,
}

/// The situation that makes the protocol reach a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// A write-behind load on a queue smaller than the key space.
    Plain,
    /// As `Plain`, but some writes break a constraint of PostgreSQL, so records are dead-lettered.
    Poison,
    /// Redis loses its data (FLUSHALL) between two loads; the worker carrying the point starts
    /// after the loss, so the point fires while the loss is being detected.
    RedisLoss,
    /// A queue of two keys that overflows to write-through, so writes take the fallback path.
    Overflow,
    /// Redis is down for a while during the load (then back, AOF always), and the policy writes
    /// through to PostgreSQL meanwhile.
    RedisDown,
}

/// A named failpoint and how the matrix reaches it.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub name: &'static str,
    pub target: Target,
    pub scenario: Scenario,
    /// `FAILPOINTS` of an earlier start of the target that sets the stage (e.g. a worker that dies
    /// holding a batch, so that the reaper has work); empty for none.
    pub stage: &'static str,
    /// Other points set alongside this one (e.g. a failing upsert, so a batch is handed back).
    pub with: &'static str,
}

/// What the point does when reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The process aborts the first time, and is started again without failpoints.
    Crash,
    /// The enclosing call returns an error the first three times.
    Error,
}

impl Action {
    /// The action's name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Error => "error",
        }
    }

    /// The `fail` crate's action.
    pub fn spec(self) -> &'static str {
        match self {
            Self::Crash => "1*return(abort)",
            Self::Error => "3*return(error)",
        }
    }
}

impl Point {
    /// `FAILPOINTS` of the start of the target that carries the point.
    pub fn failpoints(&self, action: Action) -> String {
        let own = format!("{}={}", self.name, action.spec());
        if self.with.is_empty() { own } else { format!("{own};{}", self.with) }
    }
}

impl Scenario {
    /// The queue's capacity in dirty keys.
    pub fn capacity(self) -> u64 {
        if self == Self::Overflow { 2 } else { 10 }
    }

    /// Settings of both processes: a short flush interval, leases and retry delays, so that a
    /// cell recovers within seconds.
    pub fn settings(self) -> Vec<(String, String)> {
        let capacity = self.capacity().to_string();
        let overflow = if self == Self::Overflow { "write-through" } else { "reject" };
        let redis_down = if self == Self::RedisDown { "write-through" } else { "reject" };
        let log = std::env::var("WBC_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into());
        [
            ("FLUSH_INTERVAL", "50ms"),
            ("BATCH_SIZE", "8"),
            ("LEASE_TIMEOUT", "1s"),
            ("RETRY_INITIAL_DELAY", "20ms"),
            ("RETRY_MAX_DELAY", "200ms"),
            ("MAX_RETRIES", "2"),
            ("DATABASE_MAX_CONNECTIONS", "5"),
            ("QUEUE_CAPACITY", &capacity),
            ("OVERFLOW_POLICY", overflow),
            ("REDIS_DOWN_POLICY", redis_down),
            ("RUST_LOG", &log),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// A load of `WRITERS` tasks of `writes` attempts each over `KEYS` keys: replaces and some
/// deletes, each value unique (`first` numbers the attempts, so two loads never repeat one).
/// With `poison`, some values break the poison constraint. Writers stop early once `load.stop`
/// is set.
pub fn start_load(api: String, ledger: Arc<Ledger>, writes: u64, first: u64, poison: bool) -> Load {
    let load = Load::default();
    for w in 0..WRITERS {
        let (api, ledger, finished, stop) = (api.clone(), ledger.clone(), load.finished.clone(), load.stop.clone());
        tokio::spawn(async move {
            let (http, mut rng) = (client(Duration::from_secs(10)), StdRng::seed_from_u64(first + w as u64));
            for seq in (first..first + writes).take_while(|_| !stop.load(Relaxed)) {
                let id = format!("k-{}", rng.random_range(0..KEYS));
                let roll = rng.random_range(0..100);
                let name =
                    if poison && roll >= 85 { format!("{POISON_PREFIX}-w{w}-{seq}") } else { format!("w{w}-{seq}") };
                let fields: Write = (roll >= 15).then(|| Fields::new(name, (seq % 1000) as f64 / 100.0, seq as i64));
                if !write(&http, &api, Some(&id), fields, &ledger).await {
                    // The API may be restarting after a crash: give it a moment.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            finished.fetch_add(1, Relaxed);
        });
    }
    load
}

/// A running load.
#[derive(Clone, Default)]
pub struct Load {
    /// Writers done.
    pub finished: Arc<AtomicUsize>,
    /// Asks the writers to stop after their current write.
    pub stop: Arc<AtomicBool>,
}
