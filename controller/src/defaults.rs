//! Spec defaults, taken from the shared config model so that core stays their single source: the CRD's
//! schema carries them (crdgen evaluates these functions), and the drift test notices when core changes.
use std::{collections::BTreeMap, sync::LazyLock};

use wbc_core::PipelineArgs;

use crate::crd::{FailureKind, FallbackPolicy, Mode};

/// The environment the API and worker run with when nothing is set.
static CORE_DEFAULTS: LazyLock<BTreeMap<&'static str, String>> = LazyLock::new(|| {
    PipelineArgs::from_env(std::iter::empty()).expect("the core defaults are a valid configuration").to_env()
});

fn core(key: &str) -> &'static str {
    CORE_DEFAULTS.get(key).unwrap_or_else(|| panic!("core renders no {key}"))
}

fn core_parsed<T: std::str::FromStr>(key: &str) -> T {
    core(key).parse().unwrap_or_else(|_| panic!("core's default {key}={} does not parse", core(key)))
}

fn fallback(key: &str) -> FallbackPolicy {
    match core(key) {
        "write-through" => FallbackPolicy::WriteThrough,
        _ => FallbackPolicy::Reject,
    }
}

pub(crate) fn mode() -> Mode {
    match core("WRITE_MODE") {
        "write-through" => Mode::WriteThrough,
        _ => Mode::WriteBehind,
    }
}

pub(crate) fn flush_interval() -> String {
    core("FLUSH_INTERVAL").to_owned()
}

pub(crate) fn batch_size() -> u32 {
    core_parsed("BATCH_SIZE")
}

pub(crate) fn max_retries() -> u32 {
    core_parsed("MAX_RETRIES")
}

pub(crate) fn retry_initial_delay() -> String {
    core("RETRY_INITIAL_DELAY").to_owned()
}

pub(crate) fn retry_max_delay() -> String {
    core("RETRY_MAX_DELAY").to_owned()
}

pub(crate) fn retry_multiplier() -> f64 {
    core_parsed("RETRY_MULTIPLIER")
}

pub(crate) fn queue_capacity() -> u64 {
    core_parsed("QUEUE_CAPACITY")
}

pub(crate) fn overflow_policy() -> FallbackPolicy {
    fallback("OVERFLOW_POLICY")
}

pub(crate) fn redis_down_policy() -> FallbackPolicy {
    fallback("REDIS_DOWN_POLICY")
}

pub(crate) fn lease_timeout() -> String {
    core("LEASE_TIMEOUT").to_owned()
}

pub(crate) fn cache_ttl() -> String {
    core("CACHE_TTL").to_owned()
}

pub(crate) fn failure_enabled() -> bool {
    core_parsed("SIMULATE_DB_FAILURE")
}

pub(crate) fn failure_rate() -> f64 {
    core_parsed("FAILURE_RATE")
}

pub(crate) fn failure_kind() -> FailureKind {
    match core("FAILURE_KIND") {
        "permanent" => FailureKind::Permanent,
        _ => FailureKind::Transient,
    }
}
