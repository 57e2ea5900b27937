//! Scenario 2: peak HTTP throughput of write-behind POST and PUT against `redis-benchmark -t set`,
//! and of cached GET against `redis-benchmark -t get`, with the same number of connections.
use std::{sync::Arc, time::Duration};

use serde::Serialize;

use super::{Ctx, heading, preload};
use crate::{
    Result,
    baseline::{RedisBench, redis_benchmark},
    cpu::{CpuMeter, CpuUse},
    load::{Load, Op, Summary},
    stack::{Service, Stack},
};

#[derive(Clone, Debug, Serialize)]
pub struct ThroughputResult {
    pub connections: usize,
    pub keyspace: u64,
    pub redis_set: RedisBench,
    pub redis_get: RedisBench,
    pub post: Summary,
    pub put: Summary,
    pub get: Summary,
    /// CPU use of each process during each run, as a share of one core.
    pub cpu: Vec<(String, Vec<CpuUse>)>,
}

impl ThroughputResult {
    pub fn post_ratio(&self) -> f64 {
        self.post.throughput_rps / self.redis_set.rps
    }

    pub fn put_ratio(&self) -> f64 {
        self.put.throughput_rps / self.redis_set.rps
    }

    pub fn get_ratio(&self) -> f64 {
        self.get.throughput_rps / self.redis_get.rps
    }
}

pub async fn run(ctx: &mut Ctx) -> Result<ThroughputResult> {
    heading(2, "peak throughput: HTTP against redis-benchmark, same connections");
    let s = ctx.settings.clone();
    let stack = Stack::start(&ctx.bins, &ctx.logs).await?;
    let pipeline = ctx.pipeline(100_000_000);
    let worker = stack.worker("throughput-worker", &pipeline).await?;
    let api = stack.api("throughput-api", "write-behind", &pipeline).await?;
    let (c, port) = (s.throughput_connections, stack.redis.port());
    let keys: Arc<[String]> = (0..s.keyspace).map(|i| format!("key-{i:07}")).collect();
    let drained = Duration::from_secs(600);
    let mut cpu = Vec::new();
    let services = [&api, &worker];
    let http = |label: &str, op: Op| ctx.load(format!("{label}, {c} conn"), api.addr, op, c, s.throughput_duration);

    let meter = CpuMeter::start(&stack, &[]).await?;
    let redis_set = redis_benchmark(port, "set", c, s.redis_requests, s.keyspace).await?;
    cpu.push(("redis-benchmark SET".to_owned(), meter.stop(&stack, &[]).await?));
    report_redis(&redis_set);
    let post = measured(&stack, &services, http("write-behind POST", Op::Post), &mut cpu).await?;
    stack.wait_drained(drained).await?;
    let put = measured(&stack, &services, http("write-behind PUT", Op::PutKeys(keys.clone())), &mut cpu).await?;
    // Every key of the GET load must be in the cache.
    preload(&stack.store, keys.to_vec(), pipeline.queue_capacity, "cache every GET key").await?;
    stack.wait_drained(drained).await?;
    let meter = CpuMeter::start(&stack, &[]).await?;
    let redis_get = redis_benchmark(port, "get", c, s.redis_requests, s.keyspace).await?;
    cpu.push(("redis-benchmark GET".to_owned(), meter.stop(&stack, &[]).await?));
    report_redis(&redis_get);
    let get = measured(&stack, &services, http("cached GET", Op::Get(keys)), &mut cpu).await?;

    ctx.record_rss("throughput", &services);
    let result = ThroughputResult { connections: c, keyspace: s.keyspace, redis_set, redis_get, post, put, get, cpu };
    eprintln!(
        "  => POST {:.2}, PUT {:.2} of redis SET; GET {:.2} of redis GET",
        result.post_ratio(),
        result.put_ratio(),
        result.get_ratio()
    );
    Ok(result)
}

/// Runs a load and notes who used the CPU meanwhile.
async fn measured(
    stack: &Stack,
    services: &[&Service],
    load: Load,
    cpu: &mut Vec<(String, Vec<CpuUse>)>,
) -> Result<Summary> {
    let meter = CpuMeter::start(stack, services).await?;
    let summary = load.run().await?;
    let used = meter.stop(stack, services).await?;
    let shares: Vec<String> = used.iter().map(|u| format!("{} {:.0}%", u.process, u.percent_of_core)).collect();
    eprintln!("    CPU (100% = one core): {}", shares.join(", "));
    cpu.push((load.label, used));
    Ok(summary)
}

fn report_redis(b: &RedisBench) {
    eprintln!(
        "  {:<44} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
        format!("redis-benchmark -t {}, {} conn", b.test.to_lowercase(), b.clients),
        b.rps,
        b.p50_ms,
        b.p99_ms
    );
}
