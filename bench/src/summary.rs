//! The summary table: each target of the issue with what this run measured, then the figures
//! without a target.
use std::fmt::Write;

use crate::{Results, scenarios::drain::DrainResult};

/// One target of the issue, and what this run measured for it.
pub struct Target {
    pub what: String,
    pub measured: Option<f64>,
    /// At least this (ratios), or at most this (milliseconds).
    pub goal: Goal,
}

pub enum Goal {
    RatioAtLeast(f64),
    MsAtMost(f64),
}

impl Target {
    fn cells(&self) -> [String; 3] {
        let (measured, goal, met) = match self.goal {
            Goal::RatioAtLeast(g) => {
                (self.measured.map(|m| format!("{m:.2}×")), format!("≥ {g}×"), self.measured.map(|m| m >= g))
            }
            Goal::MsAtMost(g) => {
                (self.measured.map(|m| format!("{m:.0} ms")), format!("≤ {g:.0} ms"), self.measured.map(|m| m <= g))
            }
        };
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        [measured.unwrap_or_else(|| "—".into()), goal, verdict.into()]
    }
}

/// The targets, in the order of the issue.
pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let level16 = r.latency.as_ref().and_then(|l| l.at(16));
    t.push(Target {
        what: "1. write-behind p50 speedup over write-through, 16 connections".into(),
        measured: level16.map(|l| l.p50_speedup()),
        goal: Goal::RatioAtLeast(5.0),
    });
    let tp = r.throughput.as_ref();
    for (what, measured) in [
        ("2. POST throughput / redis-benchmark SET", tp.map(|t| t.post_ratio())),
        ("2. PUT throughput / redis-benchmark SET", tp.map(|t| t.put_ratio())),
        ("2. cached GET throughput / redis-benchmark GET", tp.map(|t| t.get_ratio())),
    ] {
        t.push(Target { what: what.into(), measured, goal: Goal::RatioAtLeast(0.5) });
    }
    t.push(Target {
        what: "3. worker drain rows/s / pgbench batched upsert".into(),
        measured: r.drain.as_ref().map(DrainResult::ratio),
        goal: Goal::RatioAtLeast(0.5),
    });
    let target_ms = r.settings.flush_interval.as_secs_f64() * 1000.0 + 100.0;
    t.push(Target {
        what: "5. p99 persistence lag at half the peak write rate".into(),
        measured: r.lag.as_ref().and_then(|l| l.rows.as_ref().map(|x| x.p99_ms).or(l.histogram_p99_ms)),
        goal: Goal::MsAtMost(target_ms),
    });
    t
}

/// The summary: every target with its verdict, then the figures without a target.
pub fn summary_table(r: &Results) -> String {
    let mut s = String::from("| target | measured | target | result |\n| --- | --- | --- | --- |\n");
    for target in targets(r) {
        let [measured, goal, verdict] = target.cells();
        let _ = writeln!(s, "| {} | {measured} | {goal} | {verdict} |", target.what);
    }
    if let Some(c) = &r.coalescing {
        let _ = writeln!(
            s,
            "| 4. coalescing: writes accepted per row written ({} writes, {} rows) | {:.0}× | — | (no target) |",
            c.writes_accepted,
            c.rows_written,
            c.ratio()
        );
    }
    if let Some(l) = &r.lag {
        let _ = writeln!(s, "| 5. largest queue size (dirty keys) | {} | — | (no target) |", l.max_queue_size);
    }
    for (process, bytes) in peak_rss(r) {
        let _ = writeln!(s, "| 6. peak RSS of {process} | {} | — | (no target) |", mib(bytes));
    }
    if let Some(d) = &r.drain {
        let _ = writeln!(
            s,
            "| 6. Redis memory per dirty key | {:.0} bytes | — | (no target) |",
            d.redis_bytes_per_dirty_key
        );
    }
    for f in &r.failures {
        let _ = writeln!(s, "| FAILED: {} | — | — | not measured |", f.replace('|', "/").replace('\n', " "));
    }
    s
}

/// The largest VmHWM of the API processes and of the worker processes, over all scenarios.
fn peak_rss(r: &Results) -> Vec<(&'static str, u64)> {
    let max =
        |api: bool| r.footprint.iter().filter(|f| f.process.contains("-api") == api).map(|f| f.peak_rss_bytes).max();
    [("wbc-api", max(true)), ("wbc-worker", max(false))].into_iter().filter_map(|(p, b)| Some((p, b?))).collect()
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}
