//! Scenario 5: data at risk under sustained load. PUTs of new keys at half the peak rate for a
//! fixed time; persistence lag from PostgreSQL itself and from the worker's histogram, and the
//! queue over time.
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::{Ctx, QueuePoller, QueueSample, heading};
use crate::{
    Result,
    load::{Load, Op, Summary},
    prom::Buckets,
    stack::Stack,
};

const LAG_METRIC: &str = "wbc_worker_persistence_lag_seconds";

/// Lag of every row of the run: PostgreSQL's `updated_at` (the upsert's transaction start)
/// minus the write's version (microseconds of Redis `TIME` when the API stored it).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RowLag {
    pub rows: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LagResult {
    pub rate_rps: f64,
    /// Where the rate came from.
    pub rate_basis: String,
    pub flush_interval_ms: f64,
    pub load: Summary,
    pub rows: Option<RowLag>,
    /// Quantiles of the worker's histogram, interpolated within buckets, and the bucket bound of p99.
    pub histogram_p50_ms: Option<f64>,
    pub histogram_p99_ms: Option<f64>,
    pub histogram_p99_bound_ms: Option<f64>,
    pub max_queue_size: u64,
    pub max_in_flight: u64,
    pub max_oldest_unpersisted_ms: u64,
    /// The longest wait between two answers to the 100 ms queue poll, and when it ended: a long
    /// one means Redis, the bench or the whole shared machine stalled.
    pub longest_poll_gap_ms: f64,
    pub longest_poll_gap_at_s: f64,
    pub samples: Vec<QueueSample>,
}

impl LagResult {
    /// The target: p99 lag at most the flush interval plus 100 ms.
    pub fn target_ms(&self) -> f64 {
        self.flush_interval_ms + 100.0
    }
}

pub async fn run(ctx: &mut Ctx, peak_put_rps: Option<f64>) -> Result<LagResult> {
    let s = ctx.settings.clone();
    let (rate_rps, rate_basis) = rate(s.lag_rate, peak_put_rps);
    heading(5, &format!("data at risk: {rate_rps:.0} writes/s for {:?} ({rate_basis})", s.lag_duration));
    let stack = Stack::start(&ctx.bins, &ctx.logs).await?;
    let pipeline = ctx.pipeline(100_000_000);
    let worker = stack.worker("lag-worker", &pipeline).await?;
    let api = stack.api("lag-api", "write-behind", &pipeline).await?;

    let before = Buckets::parse(&worker.metrics().await?, LAG_METRIC);
    let poller = QueuePoller::start(stack.store.clone(), Duration::from_millis(100));
    let load = Load {
        label: format!("PUT new keys at {rate_rps:.0}/s, {} conn", s.lag_connections),
        addr: api.addr,
        op: Op::PutUnique("lag"),
        connections: s.lag_connections,
        warmup: Duration::ZERO,
        duration: s.lag_duration,
        rate: Some(rate_rps),
    };
    let load = load.run().await?;
    stack.wait_drained(Duration::from_secs(600)).await?;
    let samples = poller.stop().await;
    let lag = Buckets::parse(&worker.metrics().await?, LAG_METRIC).since(&before);
    ctx.record_rss("lag", &[&api, &worker]);
    let ms = |secs: Option<f64>| secs.map(|v| v * 1000.0);
    let (gap_s, gap_at_s) = longest_gap(&samples);

    let result = LagResult {
        rate_rps,
        rate_basis,
        flush_interval_ms: s.flush_interval.as_secs_f64() * 1000.0,
        rows: row_lag(&stack).await?,
        histogram_p50_ms: ms(lag.quantile(0.5)),
        histogram_p99_ms: ms(lag.quantile(0.99)),
        histogram_p99_bound_ms: ms(lag.quantile_bucket_bound(0.99)),
        max_queue_size: samples.iter().map(|q| q.queue_size).max().unwrap_or(0),
        max_in_flight: samples.iter().map(|q| q.in_flight).max().unwrap_or(0),
        max_oldest_unpersisted_ms: samples.iter().map(|q| q.oldest_unpersisted_age_ms).max().unwrap_or(0),
        longest_poll_gap_ms: gap_s * 1000.0,
        longest_poll_gap_at_s: gap_at_s,
        load,
        samples,
    };
    if let Some(r) = &result.rows {
        eprintln!(
            "  => lag of {} rows: p50 {:.0} ms, p99 {:.0} ms (target <= {:.0} ms); largest queue {}",
            r.rows,
            r.p50_ms,
            r.p99_ms,
            result.target_ms(),
            result.max_queue_size
        );
    }
    Ok(result)
}

/// Writes per second: the flag, else half the measured peak PUT rate, else a modest default.
fn rate(flag: Option<f64>, peak_put_rps: Option<f64>) -> (f64, String) {
    match (flag, peak_put_rps) {
        (Some(r), _) => (r, "--lag-rate".to_owned()),
        (None, Some(peak)) => (peak / 2.0, format!("half the peak PUT rate ({peak:.0}/s)")),
        (None, None) => (1000.0, "default (throughput scenario not run)".to_owned()),
    }
}

/// The longest time between two queue samples, and when it ended.
fn longest_gap(samples: &[QueueSample]) -> (f64, f64) {
    samples.windows(2).map(|w| (w[1].t_s - w[0].t_s, w[1].t_s)).fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
}

/// Lag of each persisted row of the run, from PostgreSQL; `None` when the versions do not look
/// like clock readings (a raised version floor), so they cannot be compared with `updated_at`.
async fn row_lag(stack: &Stack) -> Result<Option<RowLag>> {
    let row = sqlx::query(
        "SELECT count(*) AS rows, \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms) AS p50, \
           percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms) AS p99, \
           percentile_cont(0.999) WITHIN GROUP (ORDER BY lag_ms) AS p999, \
           max(lag_ms) AS max, min(lag_ms) AS min \
         FROM (SELECT (extract(epoch FROM updated_at) * 1000 - version / 1000.0)::float8 AS lag_ms \
               FROM products WHERE id LIKE 'lag-%') t",
    )
    .fetch_one(&stack.pool)
    .await?;
    let rows: i64 = row.get("rows");
    let min: Option<f64> = row.get("min");
    let max: Option<f64> = row.get("max");
    let plausible = |v: Option<f64>| v.is_some_and(|v| v.abs() < 3_600_000.0);
    if rows == 0 || !plausible(min) || !plausible(max) {
        return Ok(None);
    }
    Ok(Some(RowLag {
        rows,
        p50_ms: row.get("p50"),
        p99_ms: row.get("p99"),
        p999_ms: row.get("p999"),
        max_ms: max.unwrap_or_default(),
    }))
}
