//! From a spec to the ConfigMap's data: core checks the spec's settings with the rules of the API and
//! worker binaries, and renders them as the environment those binaries read.
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::crd::WriteBehindCache;

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
    if let Some(selector) = &wbc.spec.target_selector {
        selector.check()?;
    }
    let pipeline = wbc.spec.settings.clone().validate().map_err(|error| match error {
        wbc_core::Error::Config { field: Some(field), reason, .. } => format!("spec.{field}: {reason}"),
        other => other.to_string(),
    })?;
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

#[cfg(test)]
mod tests {
    use wbc_core::PipelineArgs;

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
    fn each_kind_of_value_is_spelled_as_earlier_controllers_spelled_it() {
        // another spelling would change the hash, and an upgrade of the controller would roll every pod
        let data = render(&wbc(serde_json::json!({}))).unwrap().data;
        for (env, value) in [
            ("WRITE_MODE", "write-behind"),
            ("FLUSH_INTERVAL", "1s"),
            ("BATCH_SIZE", "500"),
            ("RETRY_MULTIPLIER", "2"),
            ("FAILURE_RATE", "0.1"),
            ("SIMULATE_DB_FAILURE", "false"),
            ("OVERFLOW_POLICY", "reject"),
        ] {
            assert_eq!(data[env], value, "{env}");
        }
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
