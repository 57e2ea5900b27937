//! The Redis side: the cache, the dirty-key queue, in-flight leases and the dead-letter list.
use std::{fmt::Write, time::Duration};

use redis::{AsyncCommands, Script, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

use crate::{Error, ProductInput, Record, Result};

/// Key names under the `write_behind:` prefix.
pub mod keys {
    pub const PRODUCT_PREFIX: &str = "write_behind:product:";
    pub const DIRTY: &str = "write_behind:dirty";
    /// SET of the keys claimed in some batch.
    pub const IN_FLIGHT: &str = "write_behind:inflight_keys";
    /// ZSET of claimed batches by lease deadline (ms).
    pub const LEASES: &str = "write_behind:batches";
    /// ZSET of claimed batches by the first-dirtied time of their oldest key (ms).
    pub const BATCHES_SINCE: &str = "write_behind:batches_since";
    /// Prefix of a batch's record: its keys and their first-dirtied times.
    pub const BATCH_PREFIX: &str = "write_behind:batch:";
    pub const VERSION_FLOOR: &str = "write_behind:version_floor";
    pub const EPOCH: &str = "write_behind:epoch";
    pub const DATA_LOSS_AT: &str = "write_behind:data_loss_at_ms";
    pub const DEAD_LETTERS: &str = "write_behind:dlq";

    pub fn product(id: &str) -> String {
        format!("{PRODUCT_PREFIX}{id}")
    }

    pub fn batch(id: &str) -> String {
        format!("{BATCH_PREFIX}{id}")
    }

    /// The per-key lease keys used before batches; the reaper hands back what they still hold.
    pub mod per_key {
        pub const IN_FLIGHT: &str = "write_behind:inflight";
        pub const IN_FLIGHT_SINCE: &str = "write_behind:inflight_since";
        pub const LEASES: &str = "write_behind:leases";
    }
}

mod clock;
mod dead_letter;
mod fence;
mod write;

pub use dead_letter::{DeadLetter, Replayed, replay};
pub use write::WRITE_BUDGET;

const VERSION_PRELUDE: &str = include_str!("../scripts/version.lua");
const BATCH_PRELUDE: &str = include_str!("../scripts/batch.lua");

struct Scripts {
    write: Script,
    reserve: Script,
    set_clean: Script,
    claim: Script,
    ack: Script,
    release: Script,
    dead_letter: Script,
    replay: Script,
    fence: Script,
}

impl Scripts {
    fn load() -> Self {
        let versioned = |body: &str| Script::new(&format!("{VERSION_PRELUDE}\n{body}"));
        let batch = |body: &str| Script::new(&format!("{BATCH_PRELUDE}\n{body}"));
        Self {
            write: versioned(include_str!("../scripts/write.lua")),
            reserve: versioned(include_str!("../scripts/reserve.lua")),
            set_clean: Script::new(include_str!("../scripts/set_clean.lua")),
            claim: batch(include_str!("../scripts/claim.lua")),
            ack: batch(include_str!("../scripts/ack.lua")),
            release: batch(include_str!("../scripts/release.lua")),
            dead_letter: Script::new(include_str!("../scripts/dead_letter.lua")),
            replay: versioned(include_str!("../scripts/replay.lua")),
            fence: Script::new(include_str!("../scripts/fence.lua")),
        }
    }
}

/// What the queue holds right now.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueStats {
    /// Dirty keys waiting for a flush.
    pub queue_size: u64,
    /// Keys a worker has claimed and not yet acknowledged.
    pub in_flight: u64,
    /// Records in the dead-letter list.
    pub dead_letters: u64,
    /// Age of the oldest write not yet in PostgreSQL, in milliseconds.
    pub oldest_unpersisted_age_ms: Option<u64>,
    /// When the last loss of Redis data was detected, in Unix milliseconds.
    pub last_data_loss_at_ms: Option<u64>,
}

/// The result of a queued write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queued {
    pub version: i64,
    /// The key was already dirty, so this write replaced a queued one.
    pub coalesced: bool,
}

/// A key a worker has claimed for a flush.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub id: String,
    /// The value to persist; `None` when the cached value is gone.
    pub record: Option<Record>,
    /// When the key was first dirtied, in Unix milliseconds.
    pub dirty_since_ms: u64,
    /// W3C traceparents of the writes this flush coalesces, oldest first.
    pub traceparents: Vec<String>,
}

/// Keys claimed together under one lease, settled or handed back together.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Names the lease: the worker's token and a number of its own.
    pub id: String,
    pub keys: Vec<Claimed>,
}

/// A claimed key whose flush is over.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub id: String,
    pub version: i64,
    /// PostgreSQL already held this version or a newer one, so the cached value is dropped.
    pub stale: bool,
}

/// Handle to the Redis cache and queue; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    scripts: std::sync::Arc<Scripts>,
    clock: std::sync::Arc<clock::RedisClock>,
    /// Numbers this store's batches; with `instance`, unique across restarts of a worker that
    /// keeps its name and across a loss of Redis data, unlike a Redis counter.
    batches: std::sync::Arc<std::sync::atomic::AtomicU64>,
    instance: u32,
}

/// What the hash holds besides the version: the product fields, or nothing for a tombstone.
fn encode(input: Option<&ProductInput>) -> (String, &'static str) {
    match input {
        Some(p) => (serde_json::to_string(p).expect("product serializes"), "0"),
        None => (String::new(), "1"),
    }
}

/// `{"id": "version", …}`: versions as strings, as Redis holds them. The ack script decodes it
/// only when a key was written again during its flush.
fn versions_json(done: &[Settled]) -> String {
    let mut json = String::with_capacity(done.len() * 40 + 2);
    json.push('{');
    for (n, s) in done.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push_str(&serde_json::to_string(&s.id).expect("a string serializes"));
        let _ = write!(json, ":\"{}\"", s.version);
    }
    json.push('}');
    json
}

fn release_keys(inv: &mut redis::ScriptInvocation<'_>) {
    inv.key(keys::DIRTY).key(keys::IN_FLIGHT).key(keys::LEASES).key(keys::BATCHES_SINCE);
    inv.key(keys::per_key::IN_FLIGHT).key(keys::per_key::IN_FLIGHT_SINCE).key(keys::per_key::LEASES);
}

fn decode(id: &str, data: &str, deleted: &str, version: &str) -> Result<Record> {
    let corrupt = |reason: String| Error::Corrupt { key: keys::product(id), reason };
    let version: i64 = version.parse().map_err(|_| corrupt(format!("version '{version}'")))?;
    if deleted == "1" {
        return Ok(Record::tombstone(id, version));
    }
    let input: ProductInput = serde_json::from_str(data).map_err(|e| corrupt(e.to_string()))?;
    Ok(Record::product(id, input, version))
}

impl Store {
    /// Connects with timeouts, so a dead Redis fails requests instead of hanging them.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let mut conn = ConnectionManager::new_with_config(client, config).await?;
        let clock = std::sync::Arc::new(clock::RedisClock::measure(&mut conn).await?);
        Ok(Self {
            conn,
            scripts: std::sync::Arc::new(Scripts::load()),
            clock,
            batches: Default::default(),
            instance: rand::random(),
        })
    }

    /// A connection for commands the store does not wrap.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Caches a record that PostgreSQL holds, unless Redis has a newer one. True when stored.
    pub async fn set_clean(&self, record: &Record, ttl: Duration) -> Result<bool> {
        let input = (!record.deleted).then(|| record.input());
        let (data, deleted) = encode(input.as_ref());
        let stored: i64 = self
            .scripts
            .set_clean
            .key(keys::product(&record.id))
            .key(keys::DIRTY)
            .arg(&record.id)
            .arg(data)
            .arg(deleted)
            .arg(record.version)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(stored == 1)
    }

    /// The cached record of a key, tombstones included. A queued value older than a version
    /// PostgreSQL issued without Redis (see `fence`) is not served.
    pub async fn get(&self, id: &str) -> Result<Option<Record>> {
        type Fields = (Option<String>, Option<String>, Option<String>, Option<String>);
        let (data, deleted, version, stale_below): Fields = redis::cmd("HMGET")
            .arg(keys::product(id))
            .arg(&["data", "deleted", "version", "stale_below"])
            .query_async(&mut self.conn.clone())
            .await?;
        let (Some(data), Some(deleted), Some(version)) = (data, deleted, version) else {
            return Ok(None);
        };
        let record = decode(id, &data, &deleted, &version)?;
        let superseded = stale_below.and_then(|s| s.parse::<i64>().ok()).is_some_and(|s| record.version < s);
        Ok((!superseded).then_some(record))
    }

    /// Claims up to `batch_size` due keys as one batch under this worker's lease. The keys'
    /// traceparents are read only when `traceparents` is set.
    pub async fn claim(
        &self,
        flush_interval: Duration,
        batch_size: u32,
        lease: Duration,
        token: &str,
        traceparents: bool,
    ) -> Result<Batch> {
        let n = self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{token}/{:08x}/{n}", self.instance);
        let record: Option<String> = self
            .scripts
            .claim
            .key(keys::DIRTY)
            .key(keys::IN_FLIGHT)
            .key(keys::LEASES)
            .key(keys::BATCHES_SINCE)
            .key(keys::batch(&id))
            .arg(flush_interval.as_millis() as u64)
            .arg(batch_size)
            .arg(lease.as_millis() as u64)
            .arg(&id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some(record) = record else {
            return Ok(Batch { id, keys: Vec::new() });
        };
        let (ids, sinces): (Vec<String>, Vec<String>) = serde_json::from_str(&record)
            .map_err(|e| Error::Corrupt { key: keys::batch(&id), reason: e.to_string() })?;
        // Read after the claim, not in it: a write in between is newer and queues the key again;
        // the flush persists the newer value, and the ack, seeing that version in Redis, takes
        // the key off the queue again.
        let fields: &[&str] = if traceparents {
            &["data", "deleted", "version", "traceparents"]
        } else {
            &["data", "deleted", "version"]
        };
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(keys::product(id)).arg(fields);
        }
        let values: Vec<Vec<Option<String>>> = pipe.query_async(&mut self.conn.clone()).await?;
        let keys = ids
            .into_iter()
            .zip(sinces)
            .zip(values)
            .map(|((id, since), mut fields)| {
                let traceparents = match fields.get_mut(3).and_then(Option::take) {
                    Some(t) => t.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
                    None => Vec::new(),
                };
                let record = match fields.get(2) {
                    Some(Some(v)) => {
                        let field = |n: usize| fields[n].as_deref().unwrap_or_default();
                        Some(decode(&id, field(0), field(1), v)?)
                    }
                    _ => None,
                };
                let dirty_since_ms = since.parse::<f64>().unwrap_or(0.0) as u64;
                Ok(Claimed { id, record, dirty_since_ms, traceparents })
            })
            .collect::<Result<_>>()?;
        Ok(Batch { id, keys })
    }

    /// Acknowledges a batch and ends its lease: every key still in it is settled, and `done`
    /// gives their versions and which were stale. Returns how many keys were acknowledged: 0 when the lease was lost.
    pub async fn ack(&self, batch: &str, done: &[Settled], clean_ttl: Duration) -> Result<u64> {
        let mut inv = self.scripts.ack.prepare_invoke();
        inv.key(keys::DIRTY).key(keys::IN_FLIGHT).key(keys::LEASES).key(keys::BATCHES_SINCE).key(keys::batch(batch));
        inv.arg(batch).arg(clean_ttl.as_millis() as u64).arg(keys::PRODUCT_PREFIX).arg(versions_json(done));
        for s in done.iter().filter(|s| s.stale) {
            inv.arg(&s.id);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Hands a claimed batch back to the dirty set, keeping its keys' first-dirtied times.
    pub async fn release(&self, batch: &str) -> Result<u64> {
        let mut inv = self.scripts.release.prepare_invoke();
        release_keys(&mut inv);
        Ok(inv.arg(keys::BATCH_PREFIX).arg(batch).invoke_async(&mut self.conn.clone()).await?)
    }

    /// Returns the keys of batches whose lease has expired (their worker died) to the dirty set.
    pub async fn reap_expired_leases(&self) -> Result<u64> {
        let mut inv = self.scripts.release.prepare_invoke();
        release_keys(&mut inv);
        Ok(inv.arg(keys::BATCH_PREFIX).invoke_async(&mut self.conn.clone()).await?)
    }

    /// Sizes of the queue and the age of the oldest unpersisted write.
    pub async fn queue_stats(&self) -> Result<QueueStats> {
        type Oldest = Vec<(String, f64)>;
        // The batches' oldest keys stand for the keys in flight.
        let ((secs, micros), queue_size, in_flight, dead_letters, dirty, since, loss): (
            (u64, u64),
            u64,
            u64,
            u64,
            Oldest,
            Oldest,
            Option<u64>,
        ) = redis::pipe()
            .cmd("TIME")
            .zcard(keys::DIRTY)
            .scard(keys::IN_FLIGHT)
            .llen(keys::DEAD_LETTERS)
            .zrange_withscores(keys::DIRTY, 0, 0)
            .zrange_withscores(keys::BATCHES_SINCE, 0, 0)
            .get(keys::DATA_LOSS_AT)
            .query_async(&mut self.conn.clone())
            .await?;
        let now_ms = secs * 1000 + micros / 1000;
        let oldest = dirty.iter().chain(since.iter()).map(|(_, s)| *s as u64).min();
        Ok(QueueStats {
            queue_size,
            in_flight,
            dead_letters,
            oldest_unpersisted_age_ms: oldest.map(|t| now_ms.saturating_sub(t)),
            last_data_loss_at_ms: loss,
        })
    }

    /// The epoch marker, absent when Redis has lost (or never had) its data.
    pub async fn epoch(&self) -> Result<Option<String>> {
        Ok(self.conn.clone().get(keys::EPOCH).await?)
    }

    /// Sets the epoch only if none is set; false when another process won the race.
    pub async fn init_epoch(&self, epoch: &str) -> Result<bool> {
        let set: Option<String> =
            redis::cmd("SET").arg(keys::EPOCH).arg(epoch).arg("NX").query_async(&mut self.conn.clone()).await?;
        Ok(set.is_some())
    }

    /// Records a detected loss and raises the version floor past every persisted version.
    pub async fn record_data_loss(&self, at_ms: u64, version_floor: i64) -> Result<()> {
        let _: () = redis::pipe()
            .set(keys::DATA_LOSS_AT, at_ms)
            .cmd("SET")
            .arg(keys::VERSION_FLOOR)
            .arg(version_floor)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
