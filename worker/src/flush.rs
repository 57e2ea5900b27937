//! One flush: claimed keys upserted in one statement, then acknowledged.
use std::time::Instant;

use wbc_core::{Record, Result, db, now_ms, store::Claimed};

use crate::Worker;

/// Why a batch was not persisted.
pub enum FlushError {
    /// Worth retrying later: the database or Redis failed, or a failure was simulated.
    Transient(wbc_core::Error),
}

impl Worker {
    /// Persists a claimed batch. On failure the keys go back to the queue.
    pub(crate) async fn flush(&self, claimed: Vec<Claimed>) -> Result<(), FlushError> {
        let start = Instant::now();
        let mut records: Vec<Record> = Vec::with_capacity(claimed.len());
        let mut done: Vec<(String, i64)> = Vec::with_capacity(claimed.len());
        for c in &claimed {
            match &c.record {
                Some(r) => records.push(r.clone()),
                None => {
                    // The dirty marker outlived its value: only a loss of Redis data does this.
                    self.metrics.values_missing.inc();
                    tracing::error!(id = %c.id, "dirty key has no value in Redis; nothing to persist");
                    done.push((c.id.clone(), -1));
                }
            }
        }
        let outcome = self.upsert(&records).await;
        let rows = match outcome {
            Ok(rows) => rows,
            Err(e) => {
                self.metrics.batches.with_label_values(&["error"]).inc();
                let ids: Vec<String> = claimed.into_iter().map(|c| c.id).collect();
                if let Err(re) = self.store.release(&self.token, &ids).await {
                    // The leases expire and the reaper hands the keys back instead.
                    tracing::warn!(error = %re, "could not hand back a failed batch");
                }
                return Err(FlushError::Transient(e));
            }
        };
        done.extend(records.iter().map(|r| (r.id.clone(), r.version)));
        let acked = self.store.ack(&self.token, &done, self.pipeline.cache_ttl).await.map_err(FlushError::Transient)?;
        let now = now_ms();
        for c in &claimed {
            self.metrics.persistence_lag.observe(now.saturating_sub(c.dirty_since_ms) as f64 / 1000.0);
        }
        self.metrics.rows_persisted.inc_by(rows);
        self.metrics.rows_stale.inc_by(records.len() as u64 - rows);
        self.metrics.batches.with_label_values(&["ok"]).inc();
        self.metrics.batch_size.observe(claimed.len() as f64);
        self.metrics.flush_duration.observe(start.elapsed().as_secs_f64());
        if acked < done.len() as u64 {
            tracing::warn!(lost = done.len() as u64 - acked, "some leases expired before the batch committed");
        }
        tracing::debug!(keys = claimed.len(), rows, elapsed_ms = start.elapsed().as_millis() as u64, "batch flushed");
        Ok(())
    }

    async fn upsert(&self, records: &[Record]) -> Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        if self.pipeline.simulate_db_failure && rand::random::<f64>() < self.pipeline.failure_rate {
            return Err(wbc_core::Error::Io(std::io::Error::other("simulated database failure")));
        }
        db::upsert(&self.pool, records).await
    }
}
