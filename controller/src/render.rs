//! From a spec to the ConfigMap's data: the spec becomes the pipeline's environment, which core parses
//! and validates with exactly the rules of the API and worker binaries, then renders back.
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use wbc_core::PipelineArgs;

use crate::crd::{FailureKind, FallbackPolicy, Mode, WriteBehindCache, WriteBehindCacheSpec};

/// Each pipeline variable and the spec field it comes from, to name the field in error messages.
pub const SPEC_FIELDS: [(&str, &str); 15] = [
    ("WRITE_MODE", "spec.mode"),
    ("FLUSH_INTERVAL", "spec.flushInterval"),
    ("BATCH_SIZE", "spec.batchSize"),
    ("MAX_RETRIES", "spec.maxRetries"),
    ("RETRY_INITIAL_DELAY", "spec.retry.initialDelay"),
    ("RETRY_MAX_DELAY", "spec.retry.maxDelay"),
    ("RETRY_MULTIPLIER", "spec.retry.multiplier"),
    ("QUEUE_CAPACITY", "spec.queueCapacity"),
    ("OVERFLOW_POLICY", "spec.overflowPolicy"),
    ("REDIS_DOWN_POLICY", "spec.redisDownPolicy"),
    ("LEASE_TIMEOUT", "spec.leaseTimeout"),
    ("CACHE_TTL", "spec.cacheTtl"),
    ("SIMULATE_DB_FAILURE", "spec.failureSimulation.enabled"),
    ("FAILURE_RATE", "spec.failureSimulation.rate"),
    ("FAILURE_KIND", "spec.failureSimulation.kind"),
];

/// A valid configuration, ready to be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The ConfigMap's data: the environment of the API and worker.
    pub data: BTreeMap<String, String>,
    /// sha256 (hex) of `data`, sorted by key.
    pub hash: String,
}

/// Renders a resource, or says which field breaks which rule (a spec the schema cannot refuse).
pub fn render(wbc: &WriteBehindCache) -> Result<Rendered, String> {
    check_selector(wbc)?;
    let env = spec_env(&wbc.spec);
    let pipeline = PipelineArgs::from_env(env.iter().map(|(k, v)| (*k, v.as_str())))
        .map_err(|e| name_the_field(&e.to_string()))?;
    let data: BTreeMap<String, String> = pipeline.to_env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let hash = config_hash(&data);
    Ok(Rendered { data, hash })
}

/// sha256 of `KEY=value` lines in key order.
pub fn config_hash(data: &BTreeMap<String, String>) -> String {
    let mut sha = Sha256::new();
    for (key, value) in data {
        sha.update(key.as_bytes());
        sha.update(b"=");
        sha.update(value.as_bytes());
        sha.update(b"\n");
    }
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The spec as the pipeline's environment variables, unparsed.
pub fn spec_env(spec: &WriteBehindCacheSpec) -> BTreeMap<&'static str, String> {
    let fallback = |p: FallbackPolicy| match p {
        FallbackPolicy::Reject => "reject",
        FallbackPolicy::WriteThrough => "write-through",
    };
    let mode = match spec.mode {
        Mode::WriteBehind => "write-behind",
        Mode::WriteThrough => "write-through",
    };
    let kind = match spec.failure_simulation.kind {
        FailureKind::Transient => "transient",
        FailureKind::Permanent => "permanent",
    };
    BTreeMap::from([
        ("WRITE_MODE", mode.to_owned()),
        ("FLUSH_INTERVAL", spec.flush_interval.clone()),
        ("BATCH_SIZE", spec.batch_size.to_string()),
        ("MAX_RETRIES", spec.max_retries.to_string()),
        ("RETRY_INITIAL_DELAY", spec.retry.initial_delay.clone()),
        ("RETRY_MAX_DELAY", spec.retry.max_delay.clone()),
        ("RETRY_MULTIPLIER", spec.retry.multiplier.to_string()),
        ("QUEUE_CAPACITY", spec.queue_capacity.to_string()),
        ("OVERFLOW_POLICY", fallback(spec.overflow_policy).to_owned()),
        ("REDIS_DOWN_POLICY", fallback(spec.redis_down_policy).to_owned()),
        ("LEASE_TIMEOUT", spec.lease_timeout.clone()),
        ("CACHE_TTL", spec.cache_ttl.clone()),
        ("SIMULATE_DB_FAILURE", spec.failure_simulation.enabled.to_string()),
        ("FAILURE_RATE", spec.failure_simulation.rate.to_string()),
        ("FAILURE_KIND", kind.to_owned()),
    ])
}

/// Prefixes core's message with the spec field it is about: the variable or flag named first in it.
fn name_the_field(message: &str) -> String {
    let flag = |env: &str| format!("--{}", env.to_ascii_lowercase().replace('_', "-"));
    let first = SPEC_FIELDS
        .iter()
        .filter_map(|(env, path)| {
            let at = [message.find(env), message.find(&flag(env))].into_iter().flatten().min()?;
            Some((at, *path))
        })
        .min();
    match first {
        Some((_, path)) => format!("{path}: {message}"),
        None => message.to_owned(),
    }
}

/// An empty selector would match every Deployment in the namespace; bad label syntax fails every list.
fn check_selector(wbc: &WriteBehindCache) -> Result<(), String> {
    let Some(selector) = &wbc.spec.target_selector else { return Ok(()) };
    if selector.match_labels.is_empty() {
        return Err("spec.targetSelector.matchLabels: must name at least one label".into());
    }
    for (key, value) in &selector.match_labels {
        let name = key.rsplit_once('/').map_or(key.as_str(), |(_, name)| name);
        let prefix_ok = key.rsplit_once('/').is_none_or(|(prefix, _)| !prefix.is_empty() && prefix.len() <= 253);
        if !prefix_ok || !label_value_ok(name) || name.is_empty() {
            return Err(format!("spec.targetSelector.matchLabels: '{key}' is not a valid label key"));
        }
        if !label_value_ok(value) {
            return Err(format!("spec.targetSelector.matchLabels.{key}: '{value}' is not a valid label value"));
        }
    }
    Ok(())
}

/// At most 63 characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric (or empty).
fn label_value_ok(value: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge_ok(value.chars().next())
        && edge_ok(value.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TargetSelector;

    fn wbc(spec: serde_json::Value) -> WriteBehindCache {
        WriteBehindCache::new("cache", serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn an_empty_spec_renders_exactly_the_core_defaults() {
        let rendered = render(&wbc(serde_json::json!({}))).unwrap();
        let core = PipelineArgs::from_env(std::iter::empty()).unwrap().to_env();
        let core: BTreeMap<String, String> = core.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(rendered.data, core);
    }

    #[test]
    fn every_pipeline_variable_of_core_comes_from_a_spec_field() {
        let core: Vec<&str> = PipelineArgs::from_env(std::iter::empty()).unwrap().to_env().into_keys().collect();
        let ours: Vec<&str> = SPEC_FIELDS.iter().map(|(env, _)| *env).collect();
        let mut sorted = ours.clone();
        sorted.sort();
        assert_eq!(sorted, core);
        assert_eq!(spec_env(&WriteBehindCacheSpec::default()).into_keys().collect::<Vec<_>>(), core);
    }

    #[test]
    fn write_through_renders_the_mode_the_binaries_parse() {
        let rendered = render(&wbc(serde_json::json!({"mode": "WriteThrough", "flushInterval": "250ms"}))).unwrap();
        assert_eq!(rendered.data["WRITE_MODE"], "write-through");
        let parsed = PipelineArgs::from_env(rendered.data.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(parsed.mode, wbc_core::WriteMode::WriteThrough);
        assert_eq!(parsed.flush_interval, std::time::Duration::from_millis(250));
    }

    #[test]
    fn the_hash_changes_with_any_value_and_only_then() {
        let a = render(&wbc(serde_json::json!({}))).unwrap();
        let b = render(&wbc(serde_json::json!({"batchSize": 500}))).unwrap();
        let c = render(&wbc(serde_json::json!({"batchSize": 501}))).unwrap();
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_eq!(a.hash.len(), 64);
    }

    #[test]
    fn equivalent_durations_render_alike() {
        let a = render(&wbc(serde_json::json!({"flushInterval": "1000ms"}))).unwrap();
        let b = render(&wbc(serde_json::json!({"flushInterval": "1s"}))).unwrap();
        assert_eq!(a, b);
        let c = render(&wbc(serde_json::json!({"leaseTimeout": "1m30s"}))).unwrap();
        let d = render(&wbc(serde_json::json!({"leaseTimeout": "90s"}))).unwrap();
        assert_eq!(c, d);
        assert_eq!(c.data["LEASE_TIMEOUT"], "1m 30s");
    }

    #[test]
    fn semantic_errors_name_the_spec_field() {
        for (spec, field) in [
            (serde_json::json!({"retry": {"initialDelay": "10s", "maxDelay": "1s"}}), "spec.retry.initialDelay: "),
            (serde_json::json!({"flushInterval": "2h"}), "spec.flushInterval: "),
            (serde_json::json!({"flushInterval": "0s"}), "spec.flushInterval: "),
            (serde_json::json!({"leaseTimeout": "500ms"}), "spec.leaseTimeout: "),
            (serde_json::json!({"cacheTtl": "90d"}), "spec.cacheTtl: "),
        ] {
            let err = render(&wbc(spec.clone())).unwrap_err();
            assert!(err.starts_with(field), "{spec}: {err}");
        }
    }

    #[test]
    fn an_empty_or_malformed_selector_is_refused() {
        for labels in [
            BTreeMap::new(),
            BTreeMap::from([("app".to_owned(), "not ok".to_owned())]),
            BTreeMap::from([("/app".to_owned(), "wbc".to_owned())]),
            BTreeMap::from([("app".to_owned(), "x".repeat(64))]),
        ] {
            let mut cache = wbc(serde_json::json!({}));
            cache.spec.target_selector = Some(TargetSelector { match_labels: labels.clone() });
            let err = render(&cache).unwrap_err();
            assert!(err.starts_with("spec.targetSelector.matchLabels"), "{labels:?}: {err}");
        }
    }
}
