//! Scenario 4 (the seed's Exercise 3 and `coalescing-test.js`): a stream of PUTs over a few hot
//! keys; writes accepted against rows the worker wrote to PostgreSQL.
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use hyper::Method;
use serde::Serialize;

use super::{Ctx, QueuePoller, heading};
use crate::{
    Result,
    http::Connection,
    load::{Op, Summary},
    prom,
    stack::{Service, Stack},
};

#[derive(Clone, Debug, Serialize)]
pub struct CoalescingResult {
    pub hot_keys: usize,
    /// `queue_size` right after ten concurrent PUTs to seed-001 (Exercise 3).
    pub exercise3_queue_size: u64,
    pub load: Summary,
    /// `wbc_writes_total` during the stream: writes the API acknowledged.
    pub writes_accepted: u64,
    /// `wbc_writes_coalesced_total` during the stream.
    pub writes_coalesced: u64,
    /// `wbc_worker_rows_persisted_total` during the stream and its drain.
    pub rows_written: u64,
    pub max_queue_size: u64,
}

impl CoalescingResult {
    /// Writes accepted per row written.
    pub fn ratio(&self) -> f64 {
        self.writes_accepted as f64 / self.rows_written.max(1) as f64
    }
}

pub async fn run(ctx: &mut Ctx) -> Result<CoalescingResult> {
    let s = ctx.settings.clone();
    heading(4, &format!("coalescing: PUTs over {} hot keys (seed-001 ...)", s.hot_keys));
    let stack = Stack::start(&ctx.bins, &ctx.logs).await?;
    let pipeline = ctx.pipeline(100_000);
    let worker = stack.worker("coalescing-worker", &pipeline).await?;
    let api = stack.api("coalescing-api", "write-behind", &pipeline).await?;
    let exercise3_queue_size = exercise3(&stack, &api).await?;
    eprintln!("  10 concurrent PUTs to seed-001 leave queue_size = {exercise3_queue_size}");
    let drained = Duration::from_secs(120);
    stack.wait_drained(drained).await?;

    let rows_before = prom::sum(&worker.metrics().await?, "wbc_worker_rows_persisted_total");
    let api_before = api.metrics().await?;
    let keys: Arc<[String]> = (1..=s.hot_keys).map(|i| format!("seed-{i:03}")).collect();
    let poller = QueuePoller::start(stack.store.clone(), Duration::from_millis(50));
    let label = format!("PUT over {} hot keys, {} conn", s.hot_keys, s.coalescing_connections);
    let mut load = ctx.load(label, api.addr, Op::PutKeys(keys), s.coalescing_connections, s.coalescing_duration);
    load.warmup = Duration::ZERO; // every accepted write counts
    let load = load.run().await?;
    let samples = poller.stop().await;
    stack.wait_drained(drained).await?;
    let rows_written = prom::sum(&worker.metrics().await?, "wbc_worker_rows_persisted_total") - rows_before;
    let api_after = api.metrics().await?;
    let delta = |name: &str| (prom::sum(&api_after, name) - prom::sum(&api_before, name)) as u64;
    ctx.record_rss("coalescing", &[&api, &worker]);

    let result = CoalescingResult {
        hot_keys: s.hot_keys,
        exercise3_queue_size,
        writes_accepted: delta("wbc_writes_total"),
        writes_coalesced: delta("wbc_writes_coalesced_total"),
        rows_written: rows_written as u64,
        max_queue_size: samples.iter().map(|q| q.queue_size).max().unwrap_or(0),
        load,
    };
    eprintln!(
        "  => {} writes accepted, {} rows written: {:.0} writes per row; largest queue {}",
        result.writes_accepted,
        result.rows_written,
        result.ratio(),
        result.max_queue_size
    );
    Ok(result)
}

/// Ten PUTs to seed-001 at once, each on its own connection, then the queue size.
async fn exercise3(stack: &Stack, api: &Service) -> Result<u64> {
    let mut puts = tokio::task::JoinSet::new();
    for i in 1..=10 {
        let addr = api.addr;
        puts.spawn(async move {
            let mut conn = Connection::open(addr).await?;
            let body = format!(r#"{{"name":"Coalesced-{i}","price":{i}.99,"quantity":{i}}}"#);
            conn.send(Method::PUT, "/products/seed-001", Some(Bytes::from(body))).await
        });
    }
    while let Some(put) = puts.join_next().await {
        put.expect("PUT task panicked")?;
    }
    Ok(stack.store.queue_stats().await?.queue_size)
}
