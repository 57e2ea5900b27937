//! The Redis side: the cache, the dirty-key queue, in-flight leases and the dead-letter list.
use std::time::Duration;

use redis::{Script, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

use crate::{Error, ProductInput, Record, Result, endpoint::RedisEndpoint};

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
    /// Counts the writes Redis has taken: a smaller count than one seen before means Redis went
    /// back in time.
    pub const SEQ: &str = "write_behind:seq";
    /// A number the worker raises on each pass and PostgreSQL remembers: a smaller one in Redis
    /// means Redis lost data, even when new writes have raised `SEQ` since.
    pub const CHECKPOINT: &str = "write_behind:checkpoint";
    pub const DATA_LOSS_AT: &str = "write_behind:data_loss_at_ms";
    pub const DEAD_LETTERS: &str = "write_behind:dlq";

    pub fn product(id: &str) -> String {
        format!("{PRODUCT_PREFIX}{id}")
    }

    pub fn batch(id: &str) -> String {
        format!("{BATCH_PREFIX}{id}")
    }
}

mod batch;
mod clock;
mod dead_letter;
mod fence;
mod loss;
mod write;

pub use batch::{Batch, Claimed, Settled, Value};
pub use dead_letter::{DeadLetter, Replayed, Requeued, replay};
pub use loss::Checkpoint;
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
    renew: Script,
    checkpoint: Script,
    raise_floor: Script,
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
            renew: batch(include_str!("../scripts/renew.lua")),
            checkpoint: Script::new(include_str!("../scripts/checkpoint.lua")),
            raise_floor: Script::new(include_str!("../scripts/raise_floor.lua")),
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
    /// Connects with timeouts, so a dead Redis fails requests instead of hanging them. A refusal
    /// at start (authentication, TLS, no answer) is an `Error::Connect` that says which.
    pub async fn connect(endpoint: &RedisEndpoint) -> Result<Self> {
        let client = endpoint.client()?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let refused = |e: redis::RedisError| Error::connect_redis(endpoint, e);
        let mut conn = ConnectionManager::new_with_config(client, config).await.map_err(refused)?;
        let clock = clock::RedisClock::measure(&mut conn).await.map_err(|e| match e {
            Error::Redis(e) => refused(e),
            e => e,
        })?;
        let clock = std::sync::Arc::new(clock);
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
}
