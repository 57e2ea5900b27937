//! The pipeline settings, declared once. Each field of [`Settings`] carries its type, its default
//! (clap's), its range (clap's parser, and schemars' for the CRD's numbers), its documentation, its
//! environment variable (clap's) and its field of the `WriteBehindCache` spec (serde's, camelCase).
//! The binaries read it with clap, the controller's resource embeds it with serde, the CRD's schema
//! comes from schemars, and the ConfigMap, `/admin/config` and the checks follow from the same
//! declaration ([`leaf`]). A new setting is a new field here (with its range among the consts below and
//! in `range_checks`, if it has one) and the code that uses it.
//!
//! The documentation names enum values as the resource spells them (`WriteBehind`); `--help` lists the
//! environment's spelling (`write-behind`) next to it.
use std::time::Duration;

use clap::Args;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod duration;
mod kinds;
pub mod leaf;
mod pipeline;
#[cfg(test)]
mod tests;
mod within;

pub use kinds::{FailureKind, OverflowPolicy, RedisDownPolicy, WriteMode};
pub use pipeline::{Pipeline, PipelineArgs};
use within::Within;

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

/// How the write pipeline behaves: the spec of a WriteBehindCache, and the environment of the API and
/// the worker.
#[derive(Args, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// How a write reaches PostgreSQL: WriteBehind acknowledges once the write is in Redis and a worker
    /// persists it later; WriteThrough writes PostgreSQL before acknowledging.
    #[arg(long = "write-mode", env = "WRITE_MODE", value_enum, default_value = "write-behind")]
    pub mode: WriteMode,
    /// How long a key stays dirty before a worker flushes it, e.g. 500ms or 2s (1ms to 1h).
    #[arg(long, env = "FLUSH_INTERVAL", default_value = "1s", value_parser = Self::FLUSH_INTERVAL)]
    #[serde(with = "duration")]
    #[schemars(with = "String", regex(pattern = duration::PATTERN))]
    pub flush_interval: Duration,
    /// Dirty keys persisted per batch, in one upsert statement (1 to 10000).
    #[arg(long, env = "BATCH_SIZE", default_value_t = 500, value_parser = Self::BATCH_SIZE)]
    #[schemars(range(min = Self::BATCH_SIZE.min, max = Self::BATCH_SIZE.max))]
    pub batch_size: u32,
    /// Attempts after the first for a record that fails permanently, before it is dead-lettered (0 to 100).
    #[arg(long, env = "MAX_RETRIES", default_value_t = 3, value_parser = Self::MAX_RETRIES)]
    #[schemars(range(min = Self::MAX_RETRIES.min, max = Self::MAX_RETRIES.max))]
    pub max_retries: u32,
    /// Exponential backoff, with full jitter, between failed flushes.
    #[command(flatten)]
    pub retry: Retry,
    /// Largest number of dirty keys the queue holds (1 to 100000000).
    #[arg(long, env = "QUEUE_CAPACITY", default_value_t = 100_000, value_parser = Self::QUEUE_CAPACITY)]
    #[schemars(range(min = Self::QUEUE_CAPACITY.min, max = Self::QUEUE_CAPACITY.max))]
    pub queue_capacity: u64,
    /// What a write does when the queue is full: Reject (503 with Retry-After) or WriteThrough.
    #[arg(long, env = "OVERFLOW_POLICY", value_enum, default_value = "reject")]
    pub overflow_policy: OverflowPolicy,
    /// What a write does when Redis is unreachable: Reject (503) or WriteThrough to PostgreSQL.
    #[arg(long, env = "REDIS_DOWN_POLICY", value_enum, default_value = "reject")]
    pub redis_down_policy: RedisDownPolicy,
    /// How long a worker owns the keys it claimed before another worker may take them back; longer than
    /// the flush interval (100ms to 1h).
    #[arg(long, env = "LEASE_TIMEOUT", default_value = "30s", value_parser = Self::LEASE_TIMEOUT)]
    #[serde(with = "duration")]
    #[schemars(with = "String", regex(pattern = duration::PATTERN))]
    pub lease_timeout: Duration,
    /// Time to live of clean (persisted) values in Redis; dirty values never expire (1s to 30d).
    #[arg(long, env = "CACHE_TTL", default_value = "1h", value_parser = Self::CACHE_TTL)]
    #[serde(with = "duration")]
    #[schemars(with = "String", regex(pattern = duration::PATTERN))]
    pub cache_ttl: Duration,
    /// Longest a PostgreSQL call may take, e.g. 30s: a statement, or opening a connection. A database that
    /// hangs instead of refusing then fails the call: 503, or a retried flush (100ms to 1h).
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = Self::DATABASE_STATEMENT_TIMEOUT)]
    #[serde(with = "duration")]
    #[schemars(with = "String", regex(pattern = duration::PATTERN))]
    pub database_statement_timeout: Duration,
    /// Simulated database failures, for the failure exercises.
    #[command(flatten)]
    pub failure_simulation: FailureSimulation,
}

/// Exponential backoff, with full jitter, between failed flushes.
#[derive(Args, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Retry {
    /// First retry delay, e.g. 100ms; not longer than the largest retry delay (1ms to 1h).
    #[arg(long = "retry-initial-delay", env = "RETRY_INITIAL_DELAY", default_value = "100ms",
          value_parser = Settings::RETRY_INITIAL_DELAY)]
    #[serde(with = "duration")]
    #[schemars(with = "String", regex(pattern = duration::PATTERN))]
    pub initial_delay: Duration,
    /// Largest retry delay, e.g. 30s (1ms to 1h).
    #[arg(long = "retry-max-delay", env = "RETRY_MAX_DELAY", default_value = "30s",
          value_parser = Settings::RETRY_MAX_DELAY)]
    #[serde(with = "duration")]
    #[schemars(with = "String", regex(pattern = duration::PATTERN))]
    pub max_delay: Duration,
    /// Factor by which the delay grows after each failure (1 to 10).
    #[arg(long = "retry-multiplier", env = "RETRY_MULTIPLIER", default_value_t = 2.0,
          value_parser = Settings::RETRY_MULTIPLIER)]
    #[schemars(range(min = Settings::RETRY_MULTIPLIER.min, max = Settings::RETRY_MULTIPLIER.max))]
    pub multiplier: f64,
}

/// Simulated database failures, for the failure exercises.
#[derive(Args, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct FailureSimulation {
    /// Whether a fraction of database writes fail on purpose.
    #[arg(long = "simulate-db-failure", env = "SIMULATE_DB_FAILURE", default_value = "false",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub enabled: bool,
    /// Fraction of database writes that fail while enabled (0 to 1).
    #[arg(long = "failure-rate", env = "FAILURE_RATE", default_value_t = 0.1,
          value_parser = Settings::FAILURE_RATE)]
    #[schemars(range(min = Settings::FAILURE_RATE.min, max = Settings::FAILURE_RATE.max))]
    pub rate: f64,
    /// Transient failures fail whole batches and are retried; Permanent failures fail single records,
    /// which end in the dead-letter queue.
    #[arg(long = "failure-kind", env = "FAILURE_KIND", value_enum, default_value = "transient")]
    pub kind: FailureKind,
}

impl Settings {
    const FLUSH_INTERVAL: Within<Duration> = Within::new(MS, HOUR);
    const BATCH_SIZE: Within<u32> = Within::new(1, 10_000);
    const MAX_RETRIES: Within<u32> = Within::new(0, 100);
    const RETRY_INITIAL_DELAY: Within<Duration> = Within::new(MS, HOUR);
    const RETRY_MAX_DELAY: Within<Duration> = Within::new(MS, HOUR);
    const RETRY_MULTIPLIER: Within<f64> = Within::new(1.0, 10.0);
    const QUEUE_CAPACITY: Within<u64> = Within::new(1, 100_000_000);
    const LEASE_TIMEOUT: Within<Duration> = Within::new(Duration::from_millis(100), HOUR);
    const CACHE_TTL: Within<Duration> = Within::new(Duration::from_secs(1), Duration::from_secs(30 * 86_400));
    const DATABASE_STATEMENT_TIMEOUT: Within<Duration> = Within::new(Duration::from_millis(100), HOUR);
    const FAILURE_RATE: Within<f64> = Within::new(0.0, 1.0);

    /// Each bounded setting's typed value against its range, by the setting's clap id. The binaries'
    /// parsers applied these already; a resource's spec reaches the controller through serde, and the
    /// CRD's schema cannot bound a duration.
    fn range_checks(&self) -> Vec<(&'static str, Result<(), String>)> {
        vec![
            ("flush_interval", Self::FLUSH_INTERVAL.check(self.flush_interval)),
            ("batch_size", Self::BATCH_SIZE.check(self.batch_size)),
            ("max_retries", Self::MAX_RETRIES.check(self.max_retries)),
            ("initial_delay", Self::RETRY_INITIAL_DELAY.check(self.retry.initial_delay)),
            ("max_delay", Self::RETRY_MAX_DELAY.check(self.retry.max_delay)),
            ("multiplier", Self::RETRY_MULTIPLIER.check(self.retry.multiplier)),
            ("queue_capacity", Self::QUEUE_CAPACITY.check(self.queue_capacity)),
            ("lease_timeout", Self::LEASE_TIMEOUT.check(self.lease_timeout)),
            ("cache_ttl", Self::CACHE_TTL.check(self.cache_ttl)),
            ("database_statement_timeout", Self::DATABASE_STATEMENT_TIMEOUT.check(self.database_statement_timeout)),
            ("rate", Self::FAILURE_RATE.check(self.failure_simulation.rate)),
        ]
    }
}

impl Default for Settings {
    /// clap's defaults, the only place they are written.
    fn default() -> Self {
        leaf::defaults().clone()
    }
}

impl Default for Retry {
    fn default() -> Self {
        leaf::defaults().retry.clone()
    }
}

impl Default for FailureSimulation {
    fn default() -> Self {
        leaf::defaults().failure_simulation.clone()
    }
}
