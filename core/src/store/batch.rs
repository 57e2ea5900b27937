//! Batches: keys claimed together under one lease, renewed while their worker works on them,
//! then acknowledged, dead-lettered or handed back.
use std::{fmt::Write, time::Duration};

use super::{Store, decode, keys};
use crate::{Error, Record, Result};

/// A key a worker has claimed for a flush.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub id: String,
    /// What Redis holds for the key.
    pub value: Value,
    /// When the key was first dirtied, in Unix milliseconds.
    pub dirty_since_ms: u64,
    /// W3C traceparents of the writes this flush coalesces, oldest first.
    pub traceparents: Vec<String>,
}

/// The value of a claimed key, as read from Redis.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A record to persist.
    Record(Record),
    /// The cached value is gone: only a loss of Redis data does this.
    Missing,
    /// The stored value cannot be decoded (for example a field that this version does not know);
    /// it is dead-lettered with the reason instead of heading every later batch.
    Undecodable { reason: String },
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
}

impl Store {
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
        crate::failpoint!("store::after_claim");
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
                let value = match fields.get(2) {
                    Some(Some(v)) => {
                        let field = |n: usize| fields[n].as_deref().unwrap_or_default();
                        match decode(&id, field(0), field(1), v) {
                            Ok(record) => Value::Record(record),
                            Err(e) => Value::Undecodable { reason: e.to_string() },
                        }
                    }
                    _ => Value::Missing,
                };
                let dirty_since_ms = since.parse::<f64>().unwrap_or(0.0) as u64;
                Claimed { id, value, dirty_since_ms, traceparents }
            })
            .collect();
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

    /// Extends a batch's lease by `lease` from now. False when the lease was lost: the reaper
    /// handed the batch back (its keys may be another worker's now) or it was settled.
    pub async fn renew(&self, batch: &str, lease: Duration) -> Result<bool> {
        let renewed: i64 = self
            .scripts
            .renew
            .key(keys::LEASES)
            .key(keys::batch(batch))
            .arg(batch)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(renewed == 1)
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
}
