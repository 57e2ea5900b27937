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
    store::{Batch, Claimed, Settled},
    telemetry::context_from_traceparent,
};

use crate::{Worker, backoff};

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
    written: HashSet<String>,
    dead: Vec<(Record, String)>,
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
        let Batch { id: batch, keys: claimed } = batch;
        let mut settled = Vec::with_capacity(claimed.len());
        let mut records = Vec::with_capacity(claimed.len());
        for c in &claimed {
            match &c.record {
                Some(r) => records.push(r.clone()),
                None => {
                    // The dirty marker outlived its value: only a loss of Redis data does this.
                    self.metrics.values_missing.inc();
                    tracing::error!(id = %c.id, "dirty key has no value in Redis; nothing to persist");
                    settled.push(Settled { id: c.id.clone(), version: -1, stale: false });
                }
            }
        }
        let persisted = match self.persist(records.clone()).await {
            Ok(p) => p,
            Err(e) => {
                self.metrics.batches.with_label_values(&["error"]).inc();
                let ids: Vec<String> = claimed.into_iter().map(|c| c.id).collect();
                self.retried.lock().expect("retried lock").extend(ids.iter().cloned());
                if let Err(re) = self.store.release(&batch).await {
                    // The leases expire and the reaper hands the keys back instead.
                    tracing::warn!(error = %re, "could not hand back a failed batch");
                }
                return Err(e);
            }
        };
        for (record, error) in &persisted.dead {
            self.dead_letter(&batch, record, error).await?;
        }
        let dead: HashSet<&str> = persisted.dead.iter().map(|(r, _)| r.id.as_str()).collect();
        let live = records.iter().filter(|r| !dead.contains(r.id.as_str()));
        settled.extend(live.map(|r| Settled {
            id: r.id.clone(),
            version: r.version,
            stale: !persisted.written.contains(&r.id),
        }));
        let acked = self.store.ack(&batch, &settled, self.pipeline.cache_ttl).await?;
        self.record_flush(&claimed, &settled, persisted.written.len() as u64, start);
        if acked < settled.len() as u64 {
            tracing::warn!(lost = settled.len() as u64 - acked, "some leases expired before the batch committed");
        }
        Ok(())
    }

    fn record_flush(&self, claimed: &[Claimed], settled: &[Settled], written: u64, start: Instant) {
        let now = now_ms();
        for c in claimed {
            self.metrics.persistence_lag.observe(now.saturating_sub(c.dirty_since_ms) as f64 / 1000.0);
        }
        let mut retried = self.retried.lock().expect("retried lock");
        for s in settled {
            let outcome = if retried.remove(&s.id) { "after_retry" } else { "first_try" };
            self.metrics.records.with_label_values(&[outcome]).inc();
        }
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
    async fn persist(&self, records: Vec<Record>) -> Result<Persisted, wbc_core::Error> {
        let mut out = Persisted::default();
        let mut pending = vec![records];
        while let Some(mut batch) = pending.pop() {
            match self.upsert(&batch).await {
                Ok(ids) => out.written.extend(ids),
                Err(Failure::Transient(e)) => return Err(e),
                Err(Failure::Permanent(_)) if batch.len() > 1 => {
                    self.metrics.batch_splits.inc();
                    let right = batch.split_off(batch.len() / 2);
                    pending.push(right);
                    pending.push(batch);
                }
                Err(Failure::Permanent(reason)) => {
                    let record = batch.pop().expect("one record");
                    match self.retry_alone(&record, reason).await? {
                        Ok(ids) => out.written.extend(ids),
                        Err(reason) => out.dead.push((record, reason)),
                    }
                }
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
        let p = &self.pipeline;
        for attempt in 0..p.max_retries {
            self.metrics.retries.with_label_values(&["permanent"]).inc();
            tracing::warn!(id = %record.id, version = record.version, attempt = attempt + 1, %reason, "record refused; retrying");
            tokio::time::sleep(backoff::delay(p.retry_initial_delay, p.retry_max_delay, p.retry_multiplier, attempt))
                .await;
            match self.upsert(std::slice::from_ref(record)).await {
                Ok(ids) => {
                    self.retried.lock().expect("retried lock").insert(record.id.clone());
                    return Ok(Ok(ids));
                }
                Err(Failure::Permanent(r)) => reason = r,
                Err(Failure::Transient(e)) => return Err(e),
            }
        }
        Ok(Err(reason))
    }

    async fn dead_letter(&self, batch: &str, record: &Record, error: &str) -> Result<(), wbc_core::Error> {
        let letter = DeadLetter {
            id: record.id.clone(),
            version: record.version,
            deleted: record.deleted,
            value: (!record.deleted).then(|| record.input()),
            error: error.to_owned(),
            attempts: self.pipeline.max_retries + 1,
            failed_at_ms: now_ms(),
        };
        if self.store.dead_letter(batch, &letter).await? {
            self.metrics.records.with_label_values(&["dead_lettered"]).inc();
            tracing::error!(id = %letter.id, version = letter.version, attempts = letter.attempts, %error, "record moved to the dead-letter queue");
        }
        self.retried.lock().expect("retried lock").remove(&record.id);
        Ok(())
    }

    async fn upsert(&self, records: &[Record]) -> Result<Vec<String>, Failure> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let p = &self.pipeline;
        if p.simulate_db_failure {
            match p.failure_kind {
                FailureKind::Transient if rand::random::<f64>() < p.failure_rate => {
                    let e = std::io::Error::other("simulated transient database failure");
                    return Err(Failure::Transient(wbc_core::Error::Io(e)));
                }
                FailureKind::Permanent => {
                    if let Some(r) = records.iter().find(|r| poisoned(r, p.failure_rate)) {
                        return Err(Failure::Permanent(format!(
                            "simulated permanent failure of {} v{}",
                            r.id, r.version
                        )));
                    }
                }
                FailureKind::Transient => {}
            }
        }
        Ok(db::upsert(&self.pool, records).await?)
    }
}

/// Whether a simulated permanent failure hits this record: the same answer on every attempt.
fn poisoned(record: &Record, rate: f64) -> bool {
    let mut h = DefaultHasher::new();
    (&record.id, record.version).hash(&mut h);
    (h.finish() as f64 / u64::MAX as f64) < rate
}
