//! Prometheus metrics of the worker.
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, exponential_buckets};

/// Counters and histograms of the flush loop.
#[derive(Clone)]
pub struct WorkerMetrics {
    pub rows_persisted: IntCounter,
    pub rows_stale: IntCounter,
    pub batches: IntCounterVec,
    pub batch_size: Histogram,
    pub flush_duration: Histogram,
    pub persistence_lag: Histogram,
    pub retries: IntCounterVec,
    pub records: IntCounterVec,
    pub batch_splits: IntCounter,
    pub leases_reaped: IntCounter,
    pub leases_lost: IntCounter,
    pub values_missing: IntCounter,
    pub data_loss_detected: IntCounter,
}

impl WorkerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            rows_persisted: IntCounter::new("wbc_worker_rows_persisted_total", "Rows written to PostgreSQL")?,
            rows_stale: IntCounter::new(
                "wbc_worker_rows_stale_total",
                "Rows skipped because PostgreSQL already held a newer or equal version",
            )?,
            batches: IntCounterVec::new(
                Opts::new("wbc_worker_batches_total", "Flushed batches by result"),
                &["result"],
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new("wbc_worker_batch_size", "Keys per flushed batch")
                    .buckets(exponential_buckets(1.0, 2.0, 15)?),
            )?,
            flush_duration: Histogram::with_opts(
                HistogramOpts::new("wbc_worker_flush_duration_seconds", "Time to upsert and acknowledge one batch")
                    .buckets(exponential_buckets(0.0005, 2.0, 16)?),
            )?,
            persistence_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "wbc_worker_persistence_lag_seconds",
                    "Time from a key's first acknowledged write to its commit in PostgreSQL",
                )
                // Fine around common flush intervals, so a lag target such as interval + 100 ms can be read.
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 0.75, 1.0, 1.1, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0,
                    30.0, 60.0, 300.0,
                ]),
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "wbc_worker_retries_total",
                    "Retries, by error class: transient (a batch) or permanent (one record)",
                ),
                &["class"],
            )?,
            records: IntCounterVec::new(
                Opts::new(
                    "wbc_worker_records_total",
                    "Records settled, by outcome: first_try, after_retry or dead_lettered",
                ),
                &["outcome"],
            )?,
            batch_splits: IntCounter::new(
                "wbc_worker_batch_splits_total",
                "Batches halved to isolate a record that PostgreSQL refuses",
            )?,
            leases_reaped: IntCounter::new(
                "wbc_worker_leases_reaped_total",
                "Keys returned to the queue after their worker's lease expired",
            )?,
            leases_lost: IntCounter::new(
                "wbc_worker_leases_lost_total",
                "Batches a worker stopped working on because its lease had run out",
            )?,
            values_missing: IntCounter::new(
                "wbc_worker_values_missing_total",
                "Dirty keys whose value was gone from Redis when claimed",
            )?,
            data_loss_detected: IntCounter::new(
                "wbc_data_loss_detected_total",
                "Times the worker found that Redis had lost its data",
            )?,
        };
        registry.register(Box::new(m.rows_persisted.clone()))?;
        registry.register(Box::new(m.rows_stale.clone()))?;
        registry.register(Box::new(m.batches.clone()))?;
        registry.register(Box::new(m.batch_size.clone()))?;
        registry.register(Box::new(m.flush_duration.clone()))?;
        registry.register(Box::new(m.persistence_lag.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.records.clone()))?;
        registry.register(Box::new(m.batch_splits.clone()))?;
        registry.register(Box::new(m.leases_reaped.clone()))?;
        registry.register(Box::new(m.leases_lost.clone()))?;
        registry.register(Box::new(m.values_missing.clone()))?;
        registry.register(Box::new(m.data_loss_detected.clone()))?;
        // Series exist from the start, so dashboards and alerts see zeros rather than nothing.
        for result in ["ok", "error"] {
            m.batches.with_label_values(&[result]);
        }
        for class in ["transient", "permanent"] {
            m.retries.with_label_values(&[class]);
        }
        for outcome in ["first_try", "after_retry", "dead_lettered"] {
            m.records.with_label_values(&[outcome]);
        }
        Ok(m)
    }
}
