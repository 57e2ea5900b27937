//! Command line of `wbc-bench` and the settings it resolves to (full or `--quick`).
use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// Measures wbc against baselines run in the same process on the same machine, and reports ratios.
#[derive(Parser, Debug)]
#[command(name = "wbc-bench", version, about)]
pub struct Args {
    /// A run of about a minute: shorter phases and smaller sizes. Flags given explicitly still win.
    #[arg(long)]
    pub quick: bool,
    /// Directory of report.md, results.json and the PNG charts (logs go to its tmp/).
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Directory of the wbc-api and wbc-worker binaries [default: the directory of this binary].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// TrueType font of the charts (Debian package fonts-dejavu-core).
    #[arg(long, default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    pub font: PathBuf,
    /// Scenarios to run, comma-separated [default: all of them].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// Connection counts of the write-behind against write-through comparison.
    #[arg(long, value_parser = at_least_one::<usize>, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Measured time per mode and connection count [default: 10s; 2s with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency_duration: Option<Duration>,
    /// Interleaved rounds of the latency comparison: each mode's time is cut into this many slices,
    /// alternating modes, so that a change in the machine's background load hits both alike
    /// [default: 3; 2 with --quick].
    #[arg(long, value_parser = at_least_one::<u32>)]
    pub rounds: Option<u32>,
    /// Unmeasured warm-up before each measured HTTP load [default: 1s; 300ms with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// Connections of the peak-throughput runs, HTTP and redis-benchmark alike.
    #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 50)]
    pub throughput_connections: usize,
    /// Measured time of each HTTP peak-throughput run [default: 10s; 3s with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub throughput_duration: Option<Duration>,
    /// Requests of each redis-benchmark run (its -n) [default: 1000000; 100000 with --quick].
    #[arg(long, value_parser = at_least_one::<u64>)]
    pub redis_requests: Option<u64>,
    /// Keys that HTTP PUT and GET spread over, and redis-benchmark's -r.
    #[arg(long, value_parser = at_least_one::<u64>, default_value_t = 10_000)]
    pub keyspace: u64,
    /// Dirty keys preloaded before the drain [default: 200000; 20000 with --quick].
    #[arg(long, value_parser = at_least_one::<u64>)]
    pub drain_keys: Option<u64>,
    /// Workers started together for the drain (they share the queue); the target is for one.
    #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 1)]
    pub drain_workers: usize,
    /// BATCH_SIZE of the worker, and rows per statement of the batched pgbench baseline.
    #[arg(long, value_parser = batch_size, default_value_t = 500)]
    pub batch_size: u32,
    /// FLUSH_INTERVAL of the worker in every scenario.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,
    /// FLUSH_CONCURRENCY of the worker: batches it upserts at once (twice as many are in flight).
    #[arg(long, value_parser = flush_concurrency, default_value_t = 2)]
    pub flush_concurrency: u16,
    /// Clients of the pgbench baselines [default: --flush-concurrency, the statements one worker
    /// runs at once].
    #[arg(long, value_parser = at_least_one::<u32>)]
    pub pgbench_clients: Option<u32>,
    /// Duration of pgbench's one-row-per-transaction baseline [default: 5s; 2s with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub naive_duration: Option<Duration>,
    /// Hot keys of the coalescing stream: seed-001 up to this many.
    #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 10)]
    pub hot_keys: usize,
    /// Connections of the coalescing stream.
    #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 16)]
    pub coalescing_connections: usize,
    /// Duration of the coalescing stream [default: 10s; 3s with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub coalescing_duration: Option<Duration>,
    /// Duration of the sustained load that measures persistence lag [default: 30s; 8s with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lag_duration: Option<Duration>,
    /// Writes per second of the lag run [default: half the measured peak PUT rate, or 1000
    /// when the throughput scenario does not run].
    #[arg(long, value_parser = positive_rate)]
    pub lag_rate: Option<f64>,
    /// Connections of the lag run.
    #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 16)]
    pub lag_connections: usize,
}

/// The parts of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// 1: write latency, write-behind against write-through.
    Latency,
    /// 2: peak HTTP throughput against redis-benchmark.
    Throughput,
    /// 3: drain rate of the worker against pgbench.
    Drain,
    /// 4: coalescing of a stream of updates over hot keys.
    Coalescing,
    /// 5: persistence lag at half the peak write rate.
    Lag,
}

/// Everything a run needs, with the full or quick defaults applied.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub quick: bool,
    #[serde(skip)]
    pub out: PathBuf,
    #[serde(skip)]
    pub bin_dir: Option<PathBuf>,
    #[serde(skip)]
    pub font: PathBuf,
    pub scenarios: Vec<Scenario>,
    pub concurrency: Vec<usize>,
    pub latency_duration: Duration,
    pub rounds: u32,
    pub warmup: Duration,
    pub throughput_connections: usize,
    pub throughput_duration: Duration,
    pub redis_requests: u64,
    pub keyspace: u64,
    pub drain_keys: u64,
    pub drain_workers: usize,
    pub batch_size: u32,
    pub flush_interval: Duration,
    pub flush_concurrency: u16,
    pub pgbench_clients: u32,
    pub naive_duration: Duration,
    pub hot_keys: usize,
    pub coalescing_connections: usize,
    pub coalescing_duration: Duration,
    pub lag_duration: Duration,
    pub lag_rate: Option<f64>,
    pub lag_connections: usize,
}

impl Args {
    /// Applies the defaults of a full or a `--quick` run to the flags not given.
    pub fn settings(self) -> Settings {
        let Self {
            quick,
            out,
            bin_dir,
            font,
            scenarios,
            concurrency,
            latency_duration,
            rounds,
            warmup,
            throughput_connections,
            throughput_duration,
            redis_requests,
            keyspace,
            drain_keys,
            drain_workers,
            batch_size,
            flush_interval,
            flush_concurrency,
            pgbench_clients,
            naive_duration,
            hot_keys,
            coalescing_connections,
            coalescing_duration,
            lag_duration,
            lag_rate,
            lag_connections,
        } = self;
        let secs = |full: u64, quick_ms: u64| {
            if quick { Duration::from_millis(quick_ms) } else { Duration::from_secs(full) }
        };
        let scenarios = if scenarios.is_empty() { Scenario::value_variants().to_vec() } else { scenarios };
        Settings {
            quick,
            out,
            bin_dir,
            font,
            scenarios,
            concurrency,
            latency_duration: latency_duration.unwrap_or(secs(10, 2_000)),
            rounds: rounds.unwrap_or(if quick { 2 } else { 3 }),
            warmup: warmup.unwrap_or(secs(1, 300)),
            throughput_connections,
            throughput_duration: throughput_duration.unwrap_or(secs(10, 3_000)),
            redis_requests: redis_requests.unwrap_or(if quick { 100_000 } else { 1_000_000 }),
            keyspace,
            drain_keys: drain_keys.unwrap_or(if quick { 20_000 } else { 200_000 }),
            drain_workers,
            batch_size,
            flush_interval,
            flush_concurrency,
            pgbench_clients: pgbench_clients.unwrap_or(u32::from(flush_concurrency)),
            naive_duration: naive_duration.unwrap_or(secs(5, 2_000)),
            hot_keys,
            coalescing_connections,
            coalescing_duration: coalescing_duration.unwrap_or(secs(10, 3_000)),
            lag_duration: lag_duration.unwrap_or(secs(30, 8_000)),
            lag_rate,
            lag_connections,
        }
    }
}

impl Settings {
    pub fn runs(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }
}

/// A count of at least 1 (connections, keys, rounds, clients).
fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(raw: &str) -> Result<T, String> {
    match raw.trim().parse::<T>() {
        Ok(v) if v >= T::from(1) => Ok(v),
        _ => Err(format!("'{raw}' must be a whole number of at least 1")),
    }
}

/// BATCH_SIZE as the worker accepts it.
fn batch_size(raw: &str) -> Result<u32, String> {
    at_least_one::<u32>(raw).and_then(|v| if v <= 10_000 { Ok(v) } else { Err(format!("{v} is over 10000")) })
}

/// FLUSH_CONCURRENCY as the worker accepts it.
fn flush_concurrency(raw: &str) -> Result<u16, String> {
    at_least_one::<u16>(raw).and_then(|v| if v <= 64 { Ok(v) } else { Err(format!("{v} is over 64")) })
}

/// A finite request rate above 0.
fn positive_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{raw}' must be a number of requests per second above 0")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_is_documented_in_help() {
        let command = Args::command();
        command.clone().debug_assert();
        for arg in command.get_arguments().filter(|a| !["help", "version"].contains(&a.get_id().as_str())) {
            assert!(arg.get_help().is_some(), "--{} has no doc comment", arg.get_id());
        }
    }

    #[test]
    fn quick_shortens_what_is_not_given_and_keeps_what_is() {
        let s = Args::parse_from(["wbc-bench", "--quick", "--drain-keys", "5"]).settings();
        assert_eq!(s.drain_keys, 5);
        assert_eq!(s.latency_duration, Duration::from_secs(2));
        assert_eq!(s.scenarios.len(), 5);
        let full = Args::parse_from(["wbc-bench", "--scenarios", "drain,lag"]).settings();
        assert_eq!(full.drain_keys, 200_000);
        assert_eq!(full.scenarios, [Scenario::Drain, Scenario::Lag]);
    }

    #[test]
    fn zero_counts_and_bad_rates_are_refused_by_name() {
        for bad in [&["--rounds", "0"][..], &["--concurrency", "1,0"], &["--batch-size", "10001"], &["--lag-rate=-5"]] {
            let err = Args::try_parse_from(std::iter::once("wbc-bench").chain(bad.iter().copied())).err();
            let err = err.unwrap_or_else(|| panic!("{bad:?} was accepted")).to_string();
            let flag = bad[0].split('=').next().unwrap();
            assert!(err.contains(flag), "{bad:?}: {err}");
        }
    }
}
