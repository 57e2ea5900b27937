//! Loss detection: Redis lost data, or went back in time to an older state, if its checkpoint is
//! below the one PostgreSQL remembers.
//!
//! Each pass runs under a PostgreSQL lock, so passes of several workers never interleave, and
//! every step is safe to crash after: Redis's checkpoint is raised before PostgreSQL remembers it
//! (a crash in between leaves Redis ahead, which is no loss); a loss is reported by one commit in
//! PostgreSQL before Redis is marked as in step again (a crash in between leaves the report, and
//! the next pass only marks Redis); the version floor is raised before the report (idempotent).
use wbc_core::{db, now_ms};

use crate::Worker;

/// A loss reported in PostgreSQL and not yet settled in Redis.
struct Pending {
    /// Redis's checkpoint and write sequence when the loss was found.
    found: i64,
    seq: i64,
    at_ms: u64,
}

impl Pending {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(':').map(str::parse::<i64>);
        let (Some(Ok(found)), Some(Ok(seq)), Some(Ok(at_ms))) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        Some(Self { found, seq, at_ms: at_ms.max(0) as u64 })
    }
}

fn meta_i64(value: Option<String>) -> i64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl Worker {
    /// One pass of loss detection.
    pub(crate) async fn watch_for_loss(&self) -> Result<(), wbc_core::Error> {
        let mut tx = db::begin_loss_check(&self.pool).await?;
        let remembered = meta_i64(db::meta(&mut *tx, db::CHECKPOINT_KEY).await?);
        let seen_seq = meta_i64(db::meta(&mut *tx, db::SEQ_KEY).await?);
        let pending = db::meta(&mut *tx, db::LOSS_PENDING_KEY).await?;
        wbc_core::failpoint!("worker::loss_remembered_read");
        let found = self.store.checkpoint(remembered).await?;
        wbc_core::failpoint!("worker::loss_checkpoint_raised");
        if found.raised {
            db::set_meta(&mut *tx, db::CHECKPOINT_KEY, &found.next.to_string()).await?;
            db::set_meta(&mut *tx, db::SEQ_KEY, &found.seq.max(seen_seq).to_string()).await?;
            if pending.is_some() {
                db::delete_meta(&mut *tx, db::LOSS_PENDING_KEY).await?;
            }
            tx.commit().await?;
            return Ok(());
        }
        let at_ms = match pending.as_deref().and_then(Pending::parse) {
            // This very loss was reported before a crash; only Redis's mark is missing.
            Some(p) if p.found == found.found && found.seq >= p.seq => p.at_ms,
            _ => {
                let floor = db::max_version(&mut *tx).await?;
                self.store.raise_version_floor(floor).await?;
                wbc_core::failpoint!("worker::loss_floor_raised");
                let at_ms = now_ms();
                let at_least_writes = (seen_seq - found.seq).max(0);
                let losses = meta_i64(db::meta(&mut *tx, db::DATA_LOSSES_KEY).await?) + 1;
                let writes = meta_i64(db::meta(&mut *tx, db::DATA_LOSS_WRITES_KEY).await?) + at_least_writes;
                let pending = format!("{}:{}:{at_ms}", found.found, found.seq);
                db::set_meta(&mut *tx, db::LOSS_PENDING_KEY, &pending).await?;
                db::set_meta(&mut *tx, db::DATA_LOSS_AT_KEY, &at_ms.to_string()).await?;
                db::set_meta(&mut *tx, db::DATA_LOSSES_KEY, &losses.to_string()).await?;
                db::set_meta(&mut *tx, db::DATA_LOSS_WRITES_KEY, &writes.to_string()).await?;
                tx.commit().await?;
                self.metrics.data_loss_detected.inc();
                tracing::error!(
                    at_least_writes,
                    redis_checkpoint = found.found,
                    remembered_checkpoint = remembered,
                    redis_seq = found.seq,
                    remembered_seq = seen_seq,
                    detected_at_ms = at_ms,
                    "DATA LOSS: Redis lost data or went back to an older state; writes acknowledged \
                     but not yet persisted since then are gone"
                );
                wbc_core::failpoint!("worker::loss_reported");
                return self.store.settle_loss(remembered, at_ms).await;
            }
        };
        self.store.settle_loss(remembered, at_ms).await?;
        tx.commit().await?;
        Ok(())
    }
}
