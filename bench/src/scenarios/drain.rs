//! Scenario 3: N dirty keys preloaded with the API's write script, then a worker started and
//! timed until the queue is empty; against pgbench upserting the same number of new rows in
//! batches, and one row per transaction.
use std::{path::PathBuf, time::Duration};

use serde::Serialize;
use tokio::time::{Instant, sleep};

use wbc_core::{Record, db};

use super::{Ctx, QueueSample, heading, preload, sample_product};
use crate::{
    Result,
    baseline::{self, PgBench, Span, pgbench},
    prom,
    stack::{PipelineEnv, Stack},
};

#[derive(Clone, Debug, Serialize)]
pub struct DrainResult {
    pub keys: u64,
    pub workers: usize,
    pub flush_concurrency: u16,
    pub batch_size: u32,
    /// Growth of Redis `used_memory` over the preload, per dirty key.
    pub redis_bytes_per_dirty_key: f64,
    /// From the worker's spawn to an empty queue, process start and migrations check included.
    pub wall_s: f64,
    /// Keys still queued when the worker was ready, and the time from then to an empty queue.
    pub steady_keys: u64,
    pub steady_s: f64,
    /// Rows of the drain found in PostgreSQL afterwards.
    pub rows_in_postgres: i64,
    /// Batches the worker flushed, and their total time in upsert and acknowledgement
    /// (`wbc_worker_flush_duration_seconds`); the rest of the drain went to claiming.
    pub batches: u64,
    pub flush_s: f64,
    /// The worker's own statement (`wbc_core::db::upsert`) in a loop from here, without Redis.
    pub direct_rows_per_s: f64,
    pub batched: PgBench,
    pub single: PgBench,
    pub queue: Vec<QueueSample>,
}

impl DrainResult {
    /// Rows per second once the worker runs; pgbench's rates likewise leave out connecting.
    pub fn rows_per_s(&self) -> f64 {
        self.steady_keys as f64 / self.steady_s
    }

    pub fn wall_rows_per_s(&self) -> f64 {
        self.keys as f64 / self.wall_s
    }

    pub fn ratio(&self) -> f64 {
        self.rows_per_s() / self.batched.rows_per_s
    }
}

pub async fn run(ctx: &mut Ctx) -> Result<DrainResult> {
    let s = ctx.settings.clone();
    heading(3, &format!("drain: {} dirty keys into PostgreSQL, against pgbench", s.drain_keys));
    let stack = Stack::start(&ctx.bins, &ctx.logs).await?;
    let pipeline = ctx.pipeline((s.drain_keys + 1_000).min(100_000_000));
    baseline::prepare(&stack.pool).await?;
    let (batched_script, single_script) = write_scripts(ctx)?;

    let memory_before = stack.redis_used_memory().await?;
    let ids = (0..s.drain_keys).map(|i| format!("drain-{i:08}")).collect();
    preload(&stack.store, ids, pipeline.queue_capacity, "preload dirty keys (Store::write)").await?;
    let memory = stack.redis_used_memory().await?.saturating_sub(memory_before);
    let redis_bytes_per_dirty_key = memory as f64 / s.drain_keys.max(1) as f64;
    eprintln!("  Redis memory: {redis_bytes_per_dirty_key:.0} bytes per dirty key");

    let port = stack.pg_port();
    let transactions = s.drain_keys.div_ceil(u64::from(s.batch_size)).div_ceil(u64::from(s.pgbench_clients));
    let rows = u64::from(s.batch_size);
    let batched =
        pgbench(port, "batched", &batched_script, s.pgbench_clients, Span::Transactions(transactions), rows).await?;
    report_pgbench(&batched);

    let direct_rows_per_s = direct_upsert(&stack, s.drain_keys, s.batch_size).await?;
    let timed = timed_drain(ctx, &stack, &pipeline).await?;
    let rows_in_postgres: i64 =
        sqlx::query_scalar("SELECT count(*) FROM products WHERE id LIKE 'drain-%'").fetch_one(&stack.pool).await?;

    let naive = Span::Time(s.naive_duration);
    let single = pgbench(port, "one row per transaction", &single_script, s.pgbench_clients, naive, 1).await?;
    report_pgbench(&single);
    let result = DrainResult {
        keys: s.drain_keys,
        workers: s.drain_workers,
        flush_concurrency: s.flush_concurrency,
        batch_size: s.batch_size,
        redis_bytes_per_dirty_key,
        wall_s: timed.wall_s,
        steady_keys: timed.steady_keys,
        steady_s: timed.steady_s,
        rows_in_postgres,
        batches: timed.batches,
        flush_s: timed.flush_s,
        direct_rows_per_s,
        batched,
        single,
        queue: timed.queue,
    };
    eprintln!("  => worker drain is {:.2} of pgbench's batched upsert", result.ratio());
    Ok(result)
}

/// The pgbench scripts, in the run's scratch directory.
fn write_scripts(ctx: &Ctx) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(&ctx.tmp)?;
    let [batched_sql, single_sql] = baseline::setup_sql(ctx.settings.batch_size);
    let (batched, single) = (ctx.tmp.join("batched.sql"), ctx.tmp.join("single.sql"));
    std::fs::write(&batched, batched_sql)?;
    std::fs::write(&single, single_sql)?;
    Ok((batched, single))
}

struct Timed {
    batches: u64,
    flush_s: f64,
    wall_s: f64,
    steady_keys: u64,
    steady_s: f64,
    queue: Vec<QueueSample>,
}

/// Starts the workers once every key is due and polls the queue until it is empty.
async fn timed_drain(ctx: &mut Ctx, stack: &Stack, pipeline: &PipelineEnv) -> Result<Timed> {
    // Every key must be due, so that the drain measures the worker and not the flush interval.
    sleep(ctx.settings.flush_interval).await;
    let spawned = Instant::now();
    let mut workers = Vec::new();
    for n in 1..=ctx.settings.drain_workers {
        workers.push(stack.worker(&format!("drain-worker-{n}"), pipeline).await?);
    }
    let (ready_at, steady_keys) = (Instant::now(), queued(stack).await?);
    let mut queue = Vec::new();
    loop {
        let stats = stack.store.queue_stats().await?;
        let left = stats.queue_size + stats.in_flight;
        queue.push(QueueSample {
            t_s: spawned.elapsed().as_secs_f64(),
            queue_size: stats.queue_size,
            in_flight: stats.in_flight,
            oldest_unpersisted_age_ms: stats.oldest_unpersisted_age_ms.unwrap_or(0),
        });
        if left == 0 {
            break;
        }
        if spawned.elapsed() > Duration::from_secs(1800) {
            return Err(crate::Error::Timeout(format!("drain: {left} keys left after 30 minutes")));
        }
        sleep(Duration::from_millis(20)).await;
    }
    let (wall_s, steady_s) = (spawned.elapsed().as_secs_f64(), ready_at.elapsed().as_secs_f64());
    ctx.record_rss("drain", &workers.iter().collect::<Vec<_>>());
    let (mut batches, mut flush_s) = (0, 0.0);
    for worker in &workers {
        let metrics = worker.metrics().await?;
        batches += prom::sum(&metrics, "wbc_worker_flush_duration_seconds_count") as u64;
        flush_s += prom::sum(&metrics, "wbc_worker_flush_duration_seconds_sum");
    }
    eprintln!(
        "  {:<44} {:>9.0} rows/s  ({steady_keys} keys in {steady_s:.2} s after ready; {:.0} rows/s from spawn)",
        "worker drain",
        steady_keys as f64 / steady_s,
        ctx.settings.drain_keys as f64 / wall_s
    );
    Ok(Timed { batches, flush_s, wall_s, steady_keys, steady_s, queue })
}

/// The rows/s of the worker's upsert statement alone: batches of new rows, one at a time.
async fn direct_upsert(stack: &Stack, rows: u64, batch_size: u32) -> Result<f64> {
    let start = Instant::now();
    let ids: Vec<u64> = (0..rows).collect();
    for chunk in ids.chunks(batch_size.max(1) as usize) {
        let records: Vec<Record> =
            chunk.iter().map(|&i| Record::product(&format!("direct-{i:08}"), sample_product(i), 1)).collect();
        db::upsert(&stack.pool, &records).await?;
    }
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    eprintln!("  {:<44} {rate:>9.0} rows/s", "wbc_core::db::upsert in a loop (no Redis)");
    Ok(rate)
}

async fn queued(stack: &Stack) -> Result<u64> {
    let stats = stack.store.queue_stats().await?;
    Ok(stats.queue_size + stats.in_flight)
}

fn report_pgbench(b: &PgBench) {
    eprintln!(
        "  {:<44} {:>9.0} rows/s  ({:.0} transactions/s of {} rows)",
        format!("pgbench {}, {} client(s)", b.name, b.clients),
        b.rows_per_s,
        b.transactions_per_s,
        b.rows_per_transaction
    );
}
