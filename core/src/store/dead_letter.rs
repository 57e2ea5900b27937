//! The dead-letter list: records that kept failing, and putting them back into the queue without
//! letting them overwrite anything newer.
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{Store, encode, keys};
use crate::{Error, PgPool, ProductInput, Result, db};

/// A record that kept failing, parked in the dead-letter list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    pub id: String,
    pub version: i64,
    pub deleted: bool,
    /// The product fields; absent for a tombstone.
    pub value: Option<ProductInput>,
    /// The last error, as PostgreSQL reported it.
    pub error: String,
    pub attempts: u32,
    pub failed_at_ms: u64,
}

/// What a replay of dead letters did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Replayed {
    /// Records queued again.
    pub queued: u64,
    /// Records dropped because a newer version of the key exists.
    pub superseded: u64,
    /// Records left in the dead-letter list: the queue was full, or the record has no value that
    /// could be stored (it could not be decoded).
    pub kept: u64,
}

/// What became of one dead letter put back into the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeued {
    Queued,
    /// Redis holds a newer version of the key; the record was dropped.
    Superseded,
    /// The queue is full; the record stays in the list.
    QueueFull,
    /// Another replay took it first.
    Gone,
}

impl Store {
    /// Parks a failing record in the dead-letter list and takes it out of its batch; false if
    /// the batch's lease was lost. The cache stops serving the parked value (see the script).
    pub async fn dead_letter(&self, batch: &str, letter: &DeadLetter, clean_ttl: Duration) -> Result<bool> {
        let parked: i64 = self
            .scripts
            .dead_letter
            .key(keys::IN_FLIGHT)
            .key(keys::BATCHES_SINCE)
            .key(keys::DEAD_LETTERS)
            .key(keys::batch(batch))
            .key(keys::product(&letter.id))
            .key(keys::DIRTY)
            .arg(batch)
            .arg(&letter.id)
            .arg(serde_json::to_string(letter).expect("dead letter serializes"))
            .arg(clean_ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(parked == 1)
    }

    /// Dead letters, newest first (all of them for `None`), with the text each is stored as.
    pub async fn dead_letters(&self, limit: Option<usize>) -> Result<Vec<(String, DeadLetter)>> {
        let stop = limit.map_or(-1, |l| l.min(isize::MAX as usize) as isize - 1);
        let raw: Vec<String> = self.conn.clone().lrange(keys::DEAD_LETTERS, 0, stop).await?;
        raw.into_iter()
            .map(|r| {
                let letter = serde_json::from_str(&r)
                    .map_err(|e| Error::Corrupt { key: keys::DEAD_LETTERS.into(), reason: e.to_string() })?;
                Ok((r, letter))
            })
            .collect()
    }

    /// Takes one dead letter off the list and queues it again, unless Redis holds a newer
    /// version or the queue (of `capacity` keys) is full.
    pub async fn requeue(&self, raw: &str, letter: &DeadLetter, capacity: u64) -> Result<Requeued> {
        let (data, deleted) = encode(letter.value.as_ref().filter(|_| !letter.deleted));
        let outcome: i64 = self
            .scripts
            .replay
            .key(keys::product(&letter.id))
            .key(keys::DIRTY)
            .key(keys::DEAD_LETTERS)
            .key(keys::VERSION_FLOOR)
            .key(keys::IN_FLIGHT)
            .key(keys::SEQ)
            .arg(&letter.id)
            .arg(data)
            .arg(deleted)
            .arg(letter.version)
            .arg(raw)
            .arg(capacity)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match outcome {
            1 => Requeued::Queued,
            0 => Requeued::Superseded,
            -2 => Requeued::QueueFull,
            _ => Requeued::Gone,
        })
    }

    /// Removes one dead letter without queueing it.
    pub async fn drop_dead_letter(&self, raw: &str) -> Result<bool> {
        let removed: i64 = self.conn.clone().lrem(keys::DEAD_LETTERS, 1, raw).await?;
        Ok(removed == 1)
    }
}

/// Replays every dead letter, or those of one key, into a queue of `capacity` keys. A record
/// older than what PostgreSQL or Redis holds for its key is dropped as superseded instead of
/// queued; one without a storable value stays.
pub async fn replay(store: &Store, pool: &PgPool, id: Option<&str>, capacity: u64) -> Result<Replayed> {
    let mut done = Replayed::default();
    for (raw, letter) in store.dead_letters(None).await? {
        if id.is_some_and(|id| id != letter.id) {
            continue;
        }
        if letter.value.is_none() && !letter.deleted {
            done.kept += 1;
            continue;
        }
        let persisted = db::get(pool, &letter.id).await?;
        if persisted.is_some_and(|row| row.version >= letter.version) {
            if store.drop_dead_letter(&raw).await? {
                done.superseded += 1;
            }
            continue;
        }
        match store.requeue(&raw, &letter, capacity).await? {
            Requeued::Queued => done.queued += 1,
            Requeued::Superseded => done.superseded += 1,
            Requeued::QueueFull => done.kept += 1,
            Requeued::Gone => {}
        }
    }
    Ok(done)
}
