//! wbc-bench: measures wbc on its own Redis and PostgreSQL, and reports each result as a ratio
//! against a baseline measured in the same run, since absolute numbers on a shared machine are noise.
mod baseline;
mod charts;
mod config;
mod cpu;
mod error;
mod http;
mod load;
mod prom;
mod report;
mod scenarios;
mod stack;
mod summary;

use std::{future::Future, time::SystemTime};

use serde::Serialize;
use tokio::time::Instant;

pub use config::{Args, Scenario, Settings};
pub use error::{Error, Result};
use scenarios::{
    Ctx, Footprint, coalescing::CoalescingResult, drain::DrainResult, lag::LagResult, latency::LatencyResult,
    throughput::ThroughputResult,
};

/// Everything a run measured; also written as results.json.
#[derive(Debug, Serialize)]
pub struct Results {
    pub settings: Settings,
    pub machine: Machine,
    pub started_at: String,
    /// `release` or `debug`: the profile of this binary and of the wbc binaries next to it.
    pub profile: &'static str,
    pub elapsed_s: f64,
    pub latency: Option<LatencyResult>,
    pub throughput: Option<ThroughputResult>,
    pub drain: Option<DrainResult>,
    pub coalescing: Option<CoalescingResult>,
    pub lag: Option<LagResult>,
    pub footprint: Vec<Footprint>,
    /// Scenarios that failed, with their errors.
    pub failures: Vec<String>,
}

/// What the numbers were measured on.
#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub load_average_before: String,
    pub load_average_after: String,
    pub redis: String,
    pub postgres: String,
}

impl Args {
    /// Runs the scenarios, writes the report and charts and prints the summary; fails (after
    /// reporting) if any scenario failed.
    pub fn run(self) -> Result<()> {
        let settings = self.settings();
        // One thread, as redis-benchmark has: on two shared cores the load generator competes
        // with the system under test, so it should take no more than one.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(run(settings))
    }
}

async fn run(settings: Settings) -> Result<()> {
    charts::load_font(&settings.font)?;
    let bins = stack::Binaries::locate(settings.bin_dir.as_deref())?;
    std::fs::create_dir_all(&settings.out)?;
    let tmp = settings.out.join("tmp");
    let started = Instant::now();
    let mode = if settings.quick { "quick" } else { "full" };
    let profile = if cfg!(debug_assertions) { "debug build: a smoke test, not a measurement" } else { "release build" };
    eprintln!(
        "wbc-bench ({mode} run, {profile}): results in {}, logs in {}",
        settings.out.display(),
        tmp.join("logs").display()
    );
    let mut results = Results {
        machine: Machine::describe(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        settings: settings.clone(),
        profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        elapsed_s: 0.0,
        latency: None,
        throughput: None,
        drain: None,
        coalescing: None,
        lag: None,
        footprint: Vec::new(),
        failures: Vec::new(),
    };
    let mut ctx = Ctx { settings, bins, logs: tmp.join("logs"), tmp, footprint: Vec::new() };
    let failures = &mut results.failures;
    if ctx.settings.runs(Scenario::Latency) {
        results.latency = attempt(failures, "latency", scenarios::latency::run(&mut ctx)).await;
    }
    if ctx.settings.runs(Scenario::Throughput) {
        results.throughput = attempt(failures, "throughput", scenarios::throughput::run(&mut ctx)).await;
    }
    if ctx.settings.runs(Scenario::Drain) {
        results.drain = attempt(failures, "drain", scenarios::drain::run(&mut ctx)).await;
    }
    if ctx.settings.runs(Scenario::Coalescing) {
        results.coalescing = attempt(failures, "coalescing", scenarios::coalescing::run(&mut ctx)).await;
    }
    if ctx.settings.runs(Scenario::Lag) {
        let peak = results.throughput.as_ref().map(|t| t.put.throughput_rps);
        results.lag = attempt(failures, "lag", scenarios::lag::run(&mut ctx, peak)).await;
    }
    results.footprint = ctx.footprint;
    results.machine.load_average_after = load_average();
    results.elapsed_s = started.elapsed().as_secs_f64();
    finish(&results, &ctx.settings)
}

/// Runs one scenario; a failure is recorded and the run goes on.
async fn attempt<T>(failures: &mut Vec<String>, name: &str, scenario: impl Future<Output = Result<T>>) -> Option<T> {
    match scenario.await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("  !! {name} failed: {e}");
            failures.push(format!("{name}: {e}"));
            None
        }
    }
}

/// Writes report.md, results.json and the charts, and prints the summary table.
fn finish(results: &Results, settings: &Settings) -> Result<()> {
    let out = &settings.out;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(results)?)?;
    let charts = charts::draw(results, out)?;
    std::fs::write(out.join("report.md"), report::markdown(results, &charts))?;
    println!("\n{}", summary::summary_table(results));
    println!("Finished in {:.0} s. Report: {}", results.elapsed_s, out.join("report.md").display());
    if results.failures.is_empty() { Ok(()) } else { Err(Error::Failed(results.failures.len())) }
}

impl Machine {
    fn describe() -> Self {
        let first_line = |cmd: &str, arg: &str| {
            std::process::Command::new(cmd)
                .arg(arg)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_owned())
                .unwrap_or_default()
        };
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cpu: cpuinfo
                .lines()
                .find_map(|l| Some(l.split_once("model name")?.1.trim_start_matches([' ', '\t', ':']).to_owned()))
                .unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            load_average_before: load_average(),
            load_average_after: String::new(),
            redis: first_line("redis-server", "--version"),
            postgres: first_line(
                wbc_core::testkit::pg_bindir().join("postgres").to_str().unwrap_or("postgres"),
                "--version",
            ),
        }
    }
}

/// The 1, 5 and 15 minute load averages: how busy the shared machine was.
fn load_average() -> String {
    let raw = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    raw.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
