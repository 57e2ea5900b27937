//! The one configuration model shared by the API, the worker and the controller's ConfigMap.
use std::time::Duration;

use clap::{Args, ValueEnum, builder::BoolishValueParser};
use serde::Serialize;

use crate::{Error, Result};

mod store;
pub use store::StoreArgs;

/// How a write reaches PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    /// Acknowledge once the write is in Redis; the worker persists it later.
    WriteBehind,
    /// Write PostgreSQL before acknowledging.
    WriteThrough,
}

/// What a write does when the queue holds `queue_capacity` dirty keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Refuse the write with 503 and `Retry-After`.
    Reject,
    /// Write that request through to PostgreSQL.
    WriteThrough,
}

/// What a simulated database failure looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// A batch fails as if the connection dropped; it is retried without limit.
    Transient,
    /// A record fails as if it broke a constraint; it ends in the dead-letter queue.
    Permanent,
}

/// What a write does when Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisDownPolicy {
    /// Refuse the write with 503.
    Reject,
    /// Write it to PostgreSQL directly.
    WriteThrough,
}

/// The behaviour of the write pipeline.
#[derive(Args, Clone, Debug)]
pub struct PipelineArgs {
    /// Write mode: write-behind or write-through.
    #[arg(long, env = "WRITE_MODE", value_enum)]
    pub write_mode: Option<WriteMode>,
    /// Legacy switch: false means write-through. WRITE_MODE wins where both are set and agree.
    #[arg(long, env = "WRITE_BEHIND_ENABLED", value_parser = BoolishValueParser::new())]
    pub write_behind_enabled: Option<bool>,
    /// How long a key stays dirty before the worker flushes it, e.g. 500ms or 2s.
    #[arg(long, env = "FLUSH_INTERVAL", default_value = "1s", value_parser = duration_in(Duration::from_millis(1), Duration::from_secs(3600)))]
    pub flush_interval: Duration,
    /// Dirty keys persisted per batch (one upsert statement).
    #[arg(long, env = "BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Attempts after the first for a record that fails permanently, before it is dead-lettered.
    #[arg(long, env = "MAX_RETRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_retries: u32,
    /// First retry delay of the exponential backoff.
    #[arg(long, env = "RETRY_INITIAL_DELAY", default_value = "100ms", value_parser = duration_in(Duration::from_millis(1), Duration::from_secs(3600)))]
    pub retry_initial_delay: Duration,
    /// Largest retry delay of the exponential backoff.
    #[arg(long, env = "RETRY_MAX_DELAY", default_value = "30s", value_parser = duration_in(Duration::from_millis(1), Duration::from_secs(3600)))]
    pub retry_max_delay: Duration,
    /// Factor by which the retry delay grows.
    #[arg(long, env = "RETRY_MULTIPLIER", default_value_t = 2.0, value_parser = float_in(1.0, 10.0))]
    pub retry_multiplier: f64,
    /// Largest number of dirty keys the queue holds.
    #[arg(long, env = "QUEUE_CAPACITY", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub queue_capacity: u64,
    /// What a write does when the queue is full: reject (503) or write-through.
    #[arg(long, env = "OVERFLOW_POLICY", value_enum, default_value = "reject")]
    pub overflow_policy: OverflowPolicy,
    /// What a write does when Redis is unreachable: reject (503) or write-through.
    #[arg(long, env = "REDIS_DOWN_POLICY", value_enum, default_value = "reject")]
    pub redis_down_policy: RedisDownPolicy,
    /// How long a worker owns claimed keys before another worker may take them back.
    #[arg(long, env = "LEASE_TIMEOUT", default_value = "30s", value_parser = duration_in(Duration::from_millis(100), Duration::from_secs(3600)))]
    pub lease_timeout: Duration,
    /// Time to live of clean (persisted) values in Redis. Dirty values never expire.
    #[arg(long, env = "CACHE_TTL", default_value = "1h", value_parser = duration_in(Duration::from_secs(1), Duration::from_secs(30 * 86_400)))]
    pub cache_ttl: Duration,
    /// Make a fraction of database writes fail as transient errors (for exercises).
    #[arg(long, env = "SIMULATE_DB_FAILURE", default_value = "false", action = clap::ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub simulate_db_failure: bool,
    /// Fraction of database writes that fail while SIMULATE_DB_FAILURE is on.
    #[arg(long, env = "FAILURE_RATE", default_value_t = 0.1, value_parser = float_in(0.0, 1.0))]
    pub failure_rate: f64,
    /// Kind of the simulated failures: transient (retried) or permanent (dead-lettered).
    #[arg(long, env = "FAILURE_KIND", value_enum, default_value = "transient")]
    pub failure_kind: FailureKind,
}

/// The validated, effective pipeline configuration, as `/admin/config` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Pipeline {
    pub mode: WriteMode,
    #[serde(serialize_with = "as_humantime")]
    pub flush_interval: Duration,
    pub batch_size: u32,
    pub max_retries: u32,
    #[serde(serialize_with = "as_humantime")]
    pub retry_initial_delay: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub retry_max_delay: Duration,
    pub retry_multiplier: f64,
    pub queue_capacity: u64,
    pub overflow_policy: OverflowPolicy,
    pub redis_down_policy: RedisDownPolicy,
    #[serde(serialize_with = "as_humantime")]
    pub lease_timeout: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub cache_ttl: Duration,
    pub simulate_db_failure: bool,
    pub failure_rate: f64,
    pub failure_kind: FailureKind,
}

impl PipelineArgs {
    /// Checks the rules that span fields and resolves the write mode.
    pub fn validate(&self) -> Result<Pipeline> {
        let mode = match (self.write_mode, self.write_behind_enabled) {
            (Some(mode), None) => mode,
            (None, Some(true)) | (None, None) => WriteMode::WriteBehind,
            (None, Some(false)) => WriteMode::WriteThrough,
            (Some(mode), Some(enabled)) if (mode == WriteMode::WriteBehind) == enabled => mode,
            (Some(mode), Some(enabled)) => {
                return Err(Error::Config {
                    field: "WRITE_BEHIND_ENABLED",
                    reason: format!("{enabled} contradicts WRITE_MODE={mode:?}; set only one of them"),
                });
            }
        };
        if self.retry_initial_delay > self.retry_max_delay {
            return Err(Error::Config {
                field: "RETRY_INITIAL_DELAY",
                reason: "must not be longer than RETRY_MAX_DELAY".into(),
            });
        }
        // A lease must outlast a batch's commit; short flush intervals need no longer leases than 1s.
        if self.lease_timeout <= self.flush_interval.min(Duration::from_secs(1)) {
            return Err(Error::Config {
                field: "LEASE_TIMEOUT",
                reason: "must be longer than FLUSH_INTERVAL, or than 1s when FLUSH_INTERVAL is longer".into(),
            });
        }
        Ok(Pipeline {
            mode,
            flush_interval: self.flush_interval,
            batch_size: self.batch_size,
            max_retries: self.max_retries,
            retry_initial_delay: self.retry_initial_delay,
            retry_max_delay: self.retry_max_delay,
            retry_multiplier: self.retry_multiplier,
            queue_capacity: self.queue_capacity,
            overflow_policy: self.overflow_policy,
            redis_down_policy: self.redis_down_policy,
            lease_timeout: self.lease_timeout,
            cache_ttl: self.cache_ttl,
            simulate_db_failure: self.simulate_db_failure,
            failure_rate: self.failure_rate,
            failure_kind: self.failure_kind,
        })
    }
}

impl Pipeline {
    /// The environment variables that reproduce this configuration in the API and the worker.
    pub fn to_env(&self) -> std::collections::BTreeMap<&'static str, String> {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        fn v<T: ValueEnum>(x: &T) -> String {
            x.to_possible_value().map(|p| p.get_name().to_owned()).unwrap_or_default()
        }
        [
            ("WRITE_MODE", v(&self.mode)),
            ("FLUSH_INTERVAL", d(self.flush_interval)),
            ("BATCH_SIZE", self.batch_size.to_string()),
            ("MAX_RETRIES", self.max_retries.to_string()),
            ("RETRY_INITIAL_DELAY", d(self.retry_initial_delay)),
            ("RETRY_MAX_DELAY", d(self.retry_max_delay)),
            ("RETRY_MULTIPLIER", self.retry_multiplier.to_string()),
            ("QUEUE_CAPACITY", self.queue_capacity.to_string()),
            ("OVERFLOW_POLICY", v(&self.overflow_policy)),
            ("REDIS_DOWN_POLICY", v(&self.redis_down_policy)),
            ("LEASE_TIMEOUT", d(self.lease_timeout)),
            ("CACHE_TTL", d(self.cache_ttl)),
            ("SIMULATE_DB_FAILURE", self.simulate_db_failure.to_string()),
            ("FAILURE_RATE", self.failure_rate.to_string()),
            ("FAILURE_KIND", v(&self.failure_kind)),
        ]
        .into_iter()
        .collect()
    }
}

impl PipelineArgs {
    /// Parses and validates pipeline settings given as environment variables (`FLUSH_INTERVAL=2s`),
    /// with the same rules as the binaries, so a ConfigMap can be checked before it is applied.
    pub fn from_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Pipeline> {
        #[derive(clap::Parser)]
        #[command(no_binary_name = true)]
        struct Cli {
            #[command(flatten)]
            pipeline: PipelineArgs,
        }
        let args: Vec<String> =
            vars.into_iter().map(|(k, v)| format!("--{}={v}", k.to_ascii_lowercase().replace('_', "-"))).collect();
        let cli = <Cli as clap::Parser>::try_parse_from(args).map_err(|e| Error::Config {
            field: "pipeline",
            reason: e.render().to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned(),
        })?;
        cli.pipeline.validate()
    }
}

fn as_humantime<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// A clap parser for a human duration (`500ms`, `2s`, `1m`) within `[min, max]`.
pub fn duration_in(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |raw: &str| {
        let d = humantime::parse_duration(raw.trim())
            .map_err(|e| format!("'{raw}' is not a duration like 500ms or 2s ({e})"))?;
        if d < min || d > max {
            return Err(format!(
                "{} is out of range {}..={}",
                humantime::format_duration(d),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(d)
    }
}

/// A clap parser for a finite number within `[min, max]`.
pub fn float_in(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |raw: &str| {
        let v: f64 = raw.trim().parse().map_err(|_| format!("'{raw}' is not a number"))?;
        if !v.is_finite() || v < min || v > max {
            return Err(format!("{raw} is out of range {min}..={max}"));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pipeline: PipelineArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<PipelineArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("wbc").chain(args.iter().copied())).map(|c| c.pipeline)
    }

    #[test]
    fn defaults_are_write_behind_and_valid() {
        let p = parse(&[]).unwrap().validate().unwrap();
        assert_eq!(p.mode, WriteMode::WriteBehind);
        assert_eq!(p.flush_interval, Duration::from_secs(1));
    }

    #[test]
    fn legacy_switch_selects_write_through() {
        let p = parse(&["--write-behind-enabled", "false"]).unwrap().validate().unwrap();
        assert_eq!(p.mode, WriteMode::WriteThrough);
    }

    #[test]
    fn contradicting_mode_switches_are_refused_by_name() {
        let err = parse(&["--write-mode", "write-behind", "--write-behind-enabled", "false"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("WRITE_BEHIND_ENABLED"), "{err}");
    }

    #[test]
    fn bad_durations_and_modes_are_refused() {
        for bad in [
            &["--flush-interval", "soon"][..],
            &["--flush-interval", "0s"],
            &["--flush-interval", "2h"],
            &["--write-mode", "write-sideways"],
            &["--batch-size", "0"],
            &["--retry-multiplier", "NaN"],
            &["--failure-rate", "1.5"],
        ] {
            let err = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} was accepted"));
            let flag = bad[0];
            assert!(err.to_string().contains(flag), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_pipeline_round_trips_through_its_environment() {
        let p = parse(&["--flush-interval", "250ms", "--write-mode", "write-through", "--failure-kind", "permanent"])
            .unwrap()
            .validate()
            .unwrap();
        let env = p.to_env();
        let again = PipelineArgs::from_env(env.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(again.to_env(), env);
        assert_eq!(env["FLUSH_INTERVAL"], "250ms");
        assert_eq!(env["WRITE_MODE"], "write-through");
    }

    #[test]
    fn bad_environment_values_are_refused_by_name() {
        let err = PipelineArgs::from_env([("FLUSH_INTERVAL", "soon")]).unwrap_err().to_string();
        assert!(err.contains("--flush-interval"), "{err}");
        let err = PipelineArgs::from_env([("NO_SUCH_SETTING", "1")]).unwrap_err().to_string();
        assert!(err.contains("--no-such-setting"), "{err}");
    }

    #[test]
    fn initial_delay_longer_than_max_is_refused() {
        let err = parse(&["--retry-initial-delay", "10s", "--retry-max-delay", "1s"]).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("RETRY_INITIAL_DELAY"), "{err}");
    }
}
