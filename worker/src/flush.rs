//! One flush: claimed keys upserted in one statement, split to isolate records that fail for good.
use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hash, Hasher},
    time::Instant,
};

use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use wbc_core::{
    DeadLetter, FailureKind, Record, db, now_ms,
    store::{Batch, Claimed, Settled, Value},
    telemetry::context_from_traceparent,
};

use crate::Worker;

/// How an upsert failed.
enum Failure {
    /// Retrying later can succeed: the connection dropped, the database is shutting down.
    Transient(wbc_core::Error),
    /// The rows themselves are refused; the text is PostgreSQL's reason.
    Permanent(String),
}

impl From<wbc_core::Error> for Failure {
    fn from(e: wbc_core::Error) -> Self {
        if db::is_permanent(&e) { Self::Permanent(e.to_string()) } else { Self::Transient(e) }
    }
}

/// What became of a batch that did not fail transiently.
#[derive(Default)]
struct Persisted {
    /// Rows written.
    written: u64,
    /// Ids PostgreSQL refused as stale: it held the same or a newer version.
    stale: HashSet<String>,
    /// Indexes of the records that fail for good, and why.
    dead: Vec<(usize, String)>,
}

impl Worker {
    /// Persists a claimed batch and acknowledges it. On a transient failure the keys go back
    /// to the queue and the error is returned for the caller's backoff. When traces are exported,
    /// the flush span links to every write it coalesces, and each write's own trace gets a
    /// `persisted` span that links back to the flush.
    pub(crate) async fn flush(&self, batch: Batch) -> Result<(), wbc_core::Error> {
        let span = tracing::info_span!(
            "flush batch",
            otel.kind = "client",
            db.system = "postgresql",
            batch.keys = batch.keys.len(),
            worker = %self.token,
        );
        if !self.trace_writes {
            return self.flush_batch(batch).instrument(span).await;
        }
        for tp in batch.keys.iter().flat_map(|c| &c.traceparents) {
            span.add_link(context_from_traceparent(tp).span().span_context().clone());
        }
        let writes: Vec<(String, String)> =
            batch.keys.iter().filter_map(|c| Some((c.id.clone(), c.traceparents.last()?.clone()))).collect();
        let result = self.flush_batch(batch).instrument(span.clone()).await;
        if result.is_ok() {
            let flush = span.context().span().span_context().clone();
            for (id, tp) in writes {
                let persisted =
                    tracing::info_span!(parent: None, "persisted", otel.kind = "consumer", product.id = %id);
                let _ = persisted.set_parent(context_from_traceparent(&tp));
                persisted.add_link(flush.clone());
            }
        }
        result
    }

    async fn flush_batch(&self, batch: Batch) -> Result<(), wbc_core::Error> {
        let start = Instant::now();
        let Batch { id: batch, keys: mut claimed } = batch;
        let mut settled = Vec::with_capacity(claimed.len());
        let mut records = Vec::with_capacity(claimed.len());
        for c in &mut claimed {
            match std::mem::replace(&mut c.value, Value::Missing) {
                Value::Record(r) => records.push(r),
                Value::Missing => {
                    // The dirty marker outlived its value: only a loss of Redis data does this.
                    self.metrics.values_missing.inc();
                    tracing::error!(id = %c.id, "dirty key has no value in Redis; nothing to persist");
                    settled.push(Settled { id: c.id.clone(), version: -1, stale: false });
                }
                // Retrying cannot help, and it would head every later batch.
                Value::Undecodable { reason } => {
                    let letter = DeadLetter {
                        id: c.id.clone(),
                        version: 0,
                        deleted: false,
                        value: None,
                        error: format!("the value in Redis cannot be decoded: {reason}"),
                        attempts: 1,
                        failed_at_ms: now_ms(),
                    };
                    self.park(&batch, &letter).await?;
                }
            }
        }
        let persisted = match self.persist(&records).await {
            Ok(p) => p,
            Err(e) => {
                self.metrics.batches.with_label_values(&["error"]).inc();
                self.retried.lock().expect("retried lock").extend(claimed.into_iter().map(|c| c.id));
                wbc_core::failpoint!("worker::release");
                if let Err(re) = self.store.release(&batch).await {
                    // The leases expire and the reaper hands the keys back instead.
                    tracing::warn!(error = %re, "could not hand back a failed batch");
                }
                return Err(e);
            }
        };
        wbc_core::failpoint!("worker::after_commit");
        let mut dead = vec![false; records.len()];
        for (n, error) in &persisted.dead {
            self.dead_letter(&batch, &records[*n], error).await?;
            dead[*n] = true;
        }
        let live = records.into_iter().zip(dead).filter(|(_, dead)| !dead);
        settled.extend(live.map(|(r, _)| Settled {
            stale: persisted.stale.contains(&r.id),
            id: r.id,
            version: r.version,
        }));
        let acked = self.store.ack(&batch, &settled, self.pipeline.cache_ttl).await?;
        wbc_core::failpoint!("worker::after_ack");
        self.record_flush(&claimed, &settled, persisted.written, start);
        if acked < settled.len() as u64 {
            tracing::warn!(lost = settled.len() as u64 - acked, "some leases expired before the batch committed");
        }
        Ok(())
    }

    /// Metrics of a settled batch, counted once per batch rather than per key.
    fn record_flush(&self, claimed: &[Claimed], settled: &[Settled], written: u64, start: Instant) {
        let now = now_ms();
        let lag = self.metrics.persistence_lag.local();
        for c in claimed {
            lag.observe(now.saturating_sub(c.dirty_since_ms) as f64 / 1000.0);
        }
        lag.flush();
        let after_retry = {
            let mut retried = self.retried.lock().expect("retried lock");
            settled.iter().filter(|s| retried.remove(&s.id)).count() as u64
        };
        let first_try = settled.len() as u64 - after_retry;
        self.metrics.records.with_label_values(&["first_try"]).inc_by(first_try);
        self.metrics.records.with_label_values(&["after_retry"]).inc_by(after_retry);
        self.metrics.rows_persisted.inc_by(written);
        self.metrics.rows_stale.inc_by(settled.iter().filter(|s| s.stale).count() as u64);
        self.metrics.batches.with_label_values(&["ok"]).inc();
        self.metrics.batch_size.observe(claimed.len() as f64);
        self.metrics.flush_duration.observe(start.elapsed().as_secs_f64());
        tracing::debug!(
            keys = claimed.len(),
            written,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "batch flushed"
        );
    }

    /// Upserts the batch, halving any part that fails permanently until the bad records stand
    /// alone, so that one poison record never blocks the rest.
    async fn persist(&self, records: &[Record]) -> Result<Persisted, wbc_core::Error> {
        let mut out = Persisted::default();
        // Parts of `records`, by the index of their first record.
        let mut pending = vec![(0, records)];
        while let Some((at, part)) = pending.pop() {
            match self.upsert(part).await {
                Ok(stale) => out.settle(part.len(), stale),
                Err(Failure::Transient(e)) => return Err(e),
                Err(Failure::Permanent(_)) if part.len() > 1 => {
                    self.metrics.batch_splits.inc();
                    let (left, right) = part.split_at(part.len() / 2);
                    pending.push((at + left.len(), right));
                    pending.push((at, left));
                }
                Err(Failure::Permanent(reason)) => match self.retry_alone(&part[0], reason).await? {
                    Ok(stale) => out.settle(1, stale),
                    Err(reason) => out.dead.push((at, reason)),
                },
            }
        }
        Ok(out)
    }

    /// Retries one refused record `max_retries` times with backoff. `Ok(Err(reason))` means it
    /// still fails and belongs in the dead-letter queue.
    async fn retry_alone(
        &self,
        record: &Record,
        mut reason: String,
    ) -> Result<Result<Vec<String>, String>, wbc_core::Error> {
        for attempt in 0..self.pipeline.max_retries {
            self.metrics.retries.with_label_values(&["permanent"]).inc();
            tracing::warn!(id = %record.id, version = record.version, attempt = attempt + 1, %reason, "record refused; retrying");
            tokio::time::sleep(self.retry.delay(attempt)).await;
            match self.upsert(std::slice::from_ref(record)).await {
                Ok(stale) => {
                    self.retried.lock().expect("retried lock").insert(record.id.clone());
                    return Ok(Ok(stale));
                }
                Err(Failure::Permanent(r)) => reason = r,
                Err(Failure::Transient(e)) => return Err(e),
            }
        }
        Ok(Err(reason))
    }

    async fn dead_letter(&self, batch: &str, record: &Record, error: &str) -> Result<(), wbc_core::Error> {
        self.park(
            batch,
            &DeadLetter {
                id: record.id.clone(),
                version: record.version,
                deleted: record.deleted,
                value: (!record.deleted).then(|| record.input()),
                error: error.to_owned(),
                attempts: self.pipeline.max_retries + 1,
                failed_at_ms: now_ms(),
            },
        )
        .await
    }

    /// Moves a record out of its batch into the dead-letter queue.
    async fn park(&self, batch: &str, letter: &DeadLetter) -> Result<(), wbc_core::Error> {
        wbc_core::failpoint!("worker::before_dead_letter");
        if self.store.dead_letter(batch, letter, self.pipeline.cache_ttl).await? {
            self.metrics.records.with_label_values(&["dead_lettered"]).inc();
            tracing::error!(id = %letter.id, version = letter.version, attempts = letter.attempts, error = %letter.error, "record moved to the dead-letter queue");
        } else {
            tracing::warn!(id = %letter.id, "lease lost before the record was dead-lettered; it is back in the queue");
        }
        wbc_core::failpoint!("worker::after_dead_letter");
        self.retried.lock().expect("retried lock").remove(&letter.id);
        Ok(())
    }

    /// Upserts `records`, at most `flush_concurrency` statements at once. Returns the stale ids.
    async fn upsert(&self, records: &[Record]) -> Result<Vec<String>, Failure> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let p = &self.pipeline.failure_simulation;
        if p.enabled {
            match p.kind {
                FailureKind::Transient if rand::random::<f64>() < p.rate => {
                    let e = std::io::Error::other("simulated transient database failure");
                    return Err(Failure::Transient(wbc_core::Error::Io(e)));
                }
                FailureKind::Permanent => {
                    if let Some(r) = records.iter().find(|r| poisoned(r, p.rate)) {
                        return Err(Failure::Permanent(format!(
                            "simulated permanent failure of {} v{}",
                            r.id, r.version
                        )));
                    }
                }
                FailureKind::Transient => {}
            }
        }
        let _permit = self.upserts.acquire().await.expect("the semaphore is never closed");
        wbc_core::failpoint!("worker::upsert");
        Ok(db::upsert(&self.pool, records).await?)
    }
}

impl Persisted {
    /// Counts an upserted part of `rows` records, of which `stale` were not written.
    fn settle(&mut self, rows: usize, stale: Vec<String>) {
        self.written += (rows - stale.len()) as u64;
        self.stale.extend(stale);
    }
}

/// Whether a simulated permanent failure hits this record: the same answer on every attempt.
fn poisoned(record: &Record, rate: f64) -> bool {
    let mut h = DefaultHasher::new();
    (&record.id, record.version).hash(&mut h);
    (h.finish() as f64 / u64::MAX as f64) < rate
}
