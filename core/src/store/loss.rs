//! The Redis side of loss detection: the write sequence, the checkpoint and the version floor.
use super::{Store, keys};
use crate::Result;

/// What one pass of loss detection found in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Redis held at least the checkpoint PostgreSQL remembers, and it was raised to `next`;
    /// false means Redis went back in time and nothing was changed.
    pub raised: bool,
    /// The checkpoint Redis held.
    pub found: i64,
    /// The checkpoint Redis holds now.
    pub next: i64,
    /// Writes Redis has taken (its write sequence).
    pub seq: i64,
}

impl Store {
    /// Compares Redis's checkpoint with the one PostgreSQL remembers and raises it when Redis is
    /// not behind.
    pub async fn checkpoint(&self, remembered: i64) -> Result<Checkpoint> {
        let (raised, found, next, seq): (i64, i64, i64, i64) = self
            .scripts
            .checkpoint
            .key(keys::CHECKPOINT)
            .key(keys::SEQ)
            .arg(remembered)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Checkpoint { raised: raised == 1, found, next, seq })
    }

    /// Raises the version floor to `floor` (never lowers it), so that every version issued from
    /// now on is above every version PostgreSQL holds.
    pub async fn raise_version_floor(&self, floor: i64) -> Result<()> {
        let _: i64 =
            self.scripts.raise_floor.key(keys::VERSION_FLOOR).arg(floor).invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Marks a reported loss as settled in Redis: the checkpoint PostgreSQL remembers and the time
    /// of the loss, atomically, so that the next pass finds Redis in step again.
    pub async fn settle_loss(&self, checkpoint: i64, at_ms: u64) -> Result<()> {
        let _: () = redis::pipe()
            .atomic()
            .set(keys::CHECKPOINT, checkpoint)
            .set(keys::DATA_LOSS_AT, at_ms)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
