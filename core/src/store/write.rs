//! Writes into Redis: queued writes, fenced by a deadline in Redis time, and the versions that
//! write-through writes reserve.
use std::time::Duration;

use super::{Queued, Store, encode, keys};
use crate::{Error, ProductInput, Result};

/// How long a queued write may take to reach Redis: past this deadline, in Redis time, Redis
/// refuses it, and once it has certainly passed a write whose outcome is unknown may be written
/// through PostgreSQL instead. Far above Redis's latency, even under load.
pub const WRITE_BUDGET: Duration = Duration::from_secs(2);

impl Store {
    /// Stores a product (or a tombstone for `None`) and queues it for the worker.
    /// `traceparent` ties the write to the flush that persists it. `persisted` is the version
    /// PostgreSQL holds for the key (0 for none), when the caller knows it; without it a key that
    /// Redis no longer remembers fails with `VersionUnknown`, as its row may be ahead of Redis's
    /// clock. Any other error means that the write is not in Redis and never will be: a write
    /// whose reply is lost is fenced by its deadline, and the error comes only once that deadline
    /// has passed in Redis's clock.
    pub async fn write(
        &self,
        id: &str,
        input: Option<&ProductInput>,
        capacity: u64,
        traceparent: Option<&str>,
        persisted: Option<i64>,
    ) -> Result<Queued> {
        let (data, deleted) = encode(input);
        let (deadline_us, passed) = self.clock.deadline(WRITE_BUDGET);
        self.clock.refresh_if_old(&self.conn);
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.write.key(keys::product(id));
        inv.key(keys::DIRTY).key(keys::VERSION_FLOOR).key(keys::IN_FLIGHT).key(keys::SEQ);
        inv.arg(id).arg(data).arg(deleted).arg(capacity);
        inv.arg(traceparent.unwrap_or_default())
            .arg(deadline_us)
            .arg(persisted.map(|v| v.to_string()).unwrap_or_default());
        let reply: i64 = match tokio::time::timeout_at(passed.into(), inv.invoke_async(&mut conn)).await {
            Ok(Ok(reply)) => reply,
            // Refused (nothing was sent), or answered with an error (Redis has run or rejected
            // it already): no later run to wait out.
            Ok(Err(e)) if e.is_connection_refusal() || e.code().is_some() => return Err(e.into()),
            Ok(Err(e)) => {
                tokio::time::sleep_until(passed.into()).await;
                return Err(e.into());
            }
            Err(_) => return Err(past_deadline()),
        };
        // The version, negated when the write coalesced; 0 when the queue is full; 1 when the
        // persisted version is needed; 2 when late.
        match reply {
            0 => Err(Error::QueueFull { capacity }),
            1 => Err(Error::VersionUnknown { id: id.to_owned() }),
            2 => Err(past_deadline()),
            v => Ok(Queued { version: v.abs(), coalesced: v < 0 }),
        }
    }

    /// The latest Redis time it can be now, in Unix microseconds: where versions that PostgreSQL
    /// issues without Redis start, so that they stay in step with the versions Redis issues.
    pub fn redis_now_us_at_most(&self) -> i64 {
        self.clock.now_us_at_most()
    }

    /// Issues a version for a write that goes straight to PostgreSQL. A key that Redis caches no
    /// value of keeps the version for `clean_ttl`.
    pub async fn reserve_version(&self, id: &str, clean_ttl: Duration) -> Result<i64> {
        let v: i64 = self
            .scripts
            .reserve
            .key(keys::product(id))
            .key(keys::VERSION_FLOOR)
            .arg(clean_ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(v)
    }
}

/// A write that Redis did not run before its deadline, and now never will.
fn past_deadline() -> Error {
    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "Redis did not run the write before its deadline");
    Error::Redis(e.into())
}
