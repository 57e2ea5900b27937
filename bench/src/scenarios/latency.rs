//! Scenario 1 (the seed's Exercise 2): the same closed-loop POST load against a write-behind API
//! and a write-through API on one Redis and PostgreSQL, at each connection count.
use std::time::Duration;

use serde::Serialize;

use super::{Ctx, heading};
use crate::{
    Result,
    load::{Measured, Op, Summary, print_summary},
    stack::{Service, Stack},
};

/// Both modes at one connection count.
#[derive(Clone, Debug, Serialize)]
pub struct Level {
    pub connections: usize,
    pub write_behind: Summary,
    pub write_through: Summary,
}

impl Level {
    /// How many times faster write-behind is at the median.
    pub fn p50_speedup(&self) -> f64 {
        self.write_through.p50_ms / self.write_behind.p50_ms
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyResult {
    pub levels: Vec<Level>,
}

impl LatencyResult {
    pub fn at(&self, connections: usize) -> Option<&Level> {
        self.levels.iter().find(|l| l.connections == connections)
    }
}

pub async fn run(ctx: &mut Ctx) -> Result<LatencyResult> {
    heading(1, "write latency: write-behind against write-through (POST /products, closed loop)");
    let stack = Stack::start(&ctx.bins, &ctx.logs).await?;
    let pipeline = ctx.pipeline(100_000_000);
    let worker = stack.worker("latency-worker", &pipeline).await?;
    let behind = stack.api("latency-api-write-behind", "write-behind", &pipeline).await?;
    let through = stack.api("latency-api-write-through", "write-through", &pipeline).await?;
    let mut levels = Vec::new();
    for &connections in &ctx.settings.concurrency.clone() {
        let level = compare(ctx, &stack, [&behind, &through], connections).await?;
        eprintln!("  => write-behind is {:.2}x faster at p50 with {connections} connections", level.p50_speedup());
        levels.push(level);
    }
    ctx.record_rss("latency", &[&behind, &through, &worker]);
    Ok(LatencyResult { levels })
}

/// Both modes at one connection count, in interleaved rounds: A B, B A, A B …
async fn compare(ctx: &Ctx, stack: &Stack, apis: [&Service; 2], connections: usize) -> Result<Level> {
    let rounds = ctx.settings.rounds;
    let slice = ctx.settings.latency_duration / rounds;
    let mut measured: [Option<Measured>; 2] = [None, None];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for mode in order {
            let label = format!("{} POST, {connections} conn, round {}/{rounds}", MODES[mode], round + 1);
            let m = ctx.load(label.clone(), apis[mode].addr, Op::Post, connections, slice).measure().await?;
            print_summary(&m.summary(&label, connections));
            // The worker's flushes of this load must not overlap the next one.
            stack.wait_drained(Duration::from_secs(300)).await?;
            match &mut measured[mode] {
                Some(total) => total.append(m),
                None => measured[mode] = Some(m),
            }
        }
    }
    let [behind, through] = measured.map(|m| m.expect("at least one round"));
    let summary =
        |m: Measured, mode: usize| m.summary(&format!("{} POST, {connections} conn", MODES[mode]), connections);
    Ok(Level { connections, write_behind: summary(behind, 0), write_through: summary(through, 1) })
}

const MODES: [&str; 2] = ["write-behind", "write-through"];
