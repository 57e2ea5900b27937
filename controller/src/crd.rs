//! The `WriteBehindCache` custom resource: its spec (every pipeline setting of the shared config model,
//! with core's defaults) and its status.
use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;

/// API group of the custom resource and prefix of the annotations the controller writes.
pub const GROUP: &str = "wbc.dev";
/// Pod-template annotation carrying the hash of the configuration a Deployment's pods read.
pub const CONFIG_HASH_ANNOTATION: &str = "wbc.dev/config-hash";
/// Label the default target selector matches: the Deployments belong to wbc.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// Label the default target selector matches: the Deployments belong to this instance.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label of the ConfigMaps the controller renders; it watches only those.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// A human duration as the API and worker parse it: integers with units, e.g. 500ms, 2s, 1m30s, 1h.
const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*(ns|us|ms|s|m|h|d)\s*)+$";

/// Configuration of one wbc installation (API and workers) in a namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "wbc.dev",
    version = "v1alpha1",
    kind = "WriteBehindCache",
    namespaced,
    shortname = "wbc",
    status = "WriteBehindCacheStatus",
    doc = "Configuration of a wbc write-behind cache: the controller renders it into a ConfigMap and rolls the Deployments that read it",
    // raw JSON: clippy mistakes repeated keys of the structured form for duplicated attributes
    printcolumn = r#"{"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "description": "Write mode"}"#,
    printcolumn = r#"{"name": "Flush Interval", "type": "string", "jsonPath": ".spec.flushInterval",
                      "description": "How long a key stays dirty before it is flushed"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status",
                      "description": "Whether the configuration is live on every target Deployment"}"#,
    printcolumn = r#"{"name": "Degraded", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Degraded\")].status",
                      "description": "Whether the spec is refused or a store is unreachable (see kubectl describe)"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason",
                      "priority": 1, "description": "Why it is (not) ready"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WriteBehindCacheSpec {
    /// How a write reaches PostgreSQL: WriteBehind acknowledges once the write is in Redis and a worker
    /// persists it later; WriteThrough writes PostgreSQL before acknowledging.
    #[serde(default = "defaults::mode")]
    pub mode: Mode,
    /// How long a key stays dirty before a worker flushes it, e.g. 500ms or 2s (1ms to 1h).
    #[serde(default = "defaults::flush_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub flush_interval: String,
    /// Dirty keys persisted per batch, in one upsert statement.
    #[serde(default = "defaults::batch_size")]
    #[schemars(range(min = 1, max = 10_000))]
    pub batch_size: u32,
    /// Attempts after the first for a record that fails permanently, before it is dead-lettered.
    #[serde(default = "defaults::max_retries")]
    #[schemars(range(min = 0, max = 100))]
    pub max_retries: u32,
    /// Exponential backoff, with full jitter, between failed flushes.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Largest number of dirty keys the queue holds.
    #[serde(default = "defaults::queue_capacity")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub queue_capacity: u64,
    /// What a write does when the queue is full: Reject (503 with Retry-After) or WriteThrough.
    #[serde(default = "defaults::overflow_policy")]
    pub overflow_policy: FallbackPolicy,
    /// What a write does when Redis is unreachable: Reject (503) or WriteThrough to PostgreSQL.
    #[serde(default = "defaults::redis_down_policy")]
    pub redis_down_policy: FallbackPolicy,
    /// How long a worker owns the keys it claimed before another worker may take them back; longer than
    /// the flush interval (100ms to 1h).
    #[serde(default = "defaults::lease_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub lease_timeout: String,
    /// Time to live of clean (persisted) values in Redis; dirty values never expire (1s to 30d).
    #[serde(default = "defaults::cache_ttl")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub cache_ttl: String,
    /// Simulated database failures, for the failure exercises.
    #[serde(default)]
    pub failure_simulation: FailureSimulation,
    /// The Deployments that read the rendered ConfigMap and are rolled when it changes. When unset:
    /// the Deployments labelled app.kubernetes.io/part-of=wbc and app.kubernetes.io/instance=<the name
    /// of this WriteBehindCache>, in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_selector: Option<TargetSelector>,
}

/// The write mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Mode {
    WriteBehind,
    WriteThrough,
}

/// What a write does when its normal path is closed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FallbackPolicy {
    Reject,
    WriteThrough,
}

/// The kind of a simulated failure.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FailureKind {
    Transient,
    Permanent,
}

/// Exponential backoff between failed flushes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// First retry delay, e.g. 100ms; not longer than maxDelay.
    #[serde(default = "defaults::retry_initial_delay")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub initial_delay: String,
    /// Largest retry delay, e.g. 30s.
    #[serde(default = "defaults::retry_max_delay")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_delay: String,
    /// Factor by which the delay grows after each failure.
    #[serde(default = "defaults::retry_multiplier")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub multiplier: f64,
}

/// Simulated database failures (the seed's exercises).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureSimulation {
    /// Whether a fraction of database writes fail on purpose.
    #[serde(default = "defaults::failure_enabled")]
    pub enabled: bool,
    /// Fraction of database writes that fail while enabled, from 0 to 1.
    #[serde(default = "defaults::failure_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rate: f64,
    /// Transient failures fail whole batches and are retried; Permanent failures fail single records,
    /// which end in the dead-letter queue.
    #[serde(default = "defaults::failure_kind")]
    pub kind: FailureKind,
}

/// Which Deployments to roll, by label.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSelector {
    /// Labels a Deployment must all carry to be a target; at least one.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// What the controller last observed and applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteBehindCacheStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// sha256 of the configuration in the ConfigMap (the last valid spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Name of the ConfigMap the API and worker read their environment from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Ready, Progressing and Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One aspect of the state, in the shape of Kubernetes' metav1.Condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Progressing or Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase word for the cause of this status.
    pub reason: String,
    /// What happened, for people.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            initial_delay: defaults::retry_initial_delay(),
            max_delay: defaults::retry_max_delay(),
            multiplier: defaults::retry_multiplier(),
        }
    }
}

impl Default for FailureSimulation {
    fn default() -> Self {
        Self { enabled: defaults::failure_enabled(), rate: defaults::failure_rate(), kind: defaults::failure_kind() }
    }
}

impl Default for WriteBehindCacheSpec {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every spec field has a default")
    }
}

impl WriteBehindCache {
    /// Name of the ConfigMap rendered from this resource.
    pub fn config_map_name(&self) -> String {
        format!("{}-config", kube::ResourceExt::name_any(self))
    }

    /// The labels a target Deployment carries: the spec's selector, or the default one.
    pub fn target_labels(&self) -> BTreeMap<String, String> {
        match &self.spec.target_selector {
            Some(selector) => selector.match_labels.clone(),
            None => BTreeMap::from([
                (PART_OF_LABEL.to_owned(), "wbc".to_owned()),
                (INSTANCE_LABEL.to_owned(), kube::ResourceExt::name_any(self)),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::{CustomResourceExt, Resource};
    use serde_json::Value;
    use wbc_core::PipelineArgs;

    use super::*;

    fn spec_schema() -> Value {
        let crd = serde_json::to_value(WriteBehindCache::crd()).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    fn accepted(env: &str, value: f64) -> bool {
        PipelineArgs::from_env([(env, value.to_string().as_str())]).is_ok()
    }

    #[test]
    fn the_schema_bounds_are_the_bounds_of_the_binaries() {
        let spec = spec_schema();
        for (path, env, step) in [
            (&["batchSize"][..], "BATCH_SIZE", 1.0),
            (&["maxRetries"], "MAX_RETRIES", 1.0),
            (&["queueCapacity"], "QUEUE_CAPACITY", 1.0),
            (&["retry", "multiplier"], "RETRY_MULTIPLIER", 0.01),
            (&["failureSimulation", "rate"], "FAILURE_RATE", 0.01),
        ] {
            let field = path.iter().fold(spec.clone(), |schema, name| schema["properties"][name].clone());
            let (min, max) = (field["minimum"].as_f64().unwrap(), field["maximum"].as_f64().unwrap());
            assert!(accepted(env, min) && accepted(env, max), "{env}: core refuses {min} or {max}");
            assert!(!accepted(env, max + step), "{env}: core accepts {} beyond the schema", max + step);
            assert!(min - step < 0.0 || !accepted(env, min - step), "{env}: core accepts {} below", min - step);
        }
    }

    #[test]
    fn the_schema_defaults_are_the_core_defaults_and_an_empty_spec_takes_them() {
        let spec = spec_schema();
        assert_eq!(spec["properties"]["flushInterval"]["default"], "1s");
        assert_eq!(spec["properties"]["mode"]["default"], "WriteBehind");
        assert_eq!(spec["properties"]["retry"]["default"]["maxDelay"], "30s");
        let empty: WriteBehindCacheSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, WriteBehindCacheSpec::default());
        assert_eq!(empty.batch_size, 500);
    }

    #[test]
    fn every_spec_field_is_described() {
        fn walk(schema: &Value, path: &str) {
            for (name, field) in schema["properties"].as_object().into_iter().flatten() {
                let path = format!("{path}.{name}");
                assert!(field["description"].as_str().is_some_and(|d| !d.is_empty()), "{path} has no description");
                walk(field, &path);
            }
        }
        walk(&spec_schema(), "spec");
    }

    #[test]
    fn the_annotation_lives_in_the_resources_group() {
        assert_eq!(WriteBehindCache::group(&()), GROUP);
        assert!(CONFIG_HASH_ANNOTATION.starts_with(&format!("{GROUP}/")));
    }
}
