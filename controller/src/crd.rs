//! The `WriteBehindCache` custom resource: its spec (core's settings model, embedded, and the target
//! Deployments) and its status.
use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use wbc_core::Settings;

/// API group of the custom resource and prefix of the annotations the controller writes.
pub const GROUP: &str = "wbc.dev";
/// Pod-template annotation carrying the hash of the configuration a Deployment's pods read.
pub const CONFIG_HASH_ANNOTATION: &str = "wbc.dev/config-hash";
/// Deployment annotation naming the cache that holds it, when several select it (claims.rs).
pub const CACHE_ANNOTATION: &str = "wbc.dev/cache";
/// Label the default target selector matches: the Deployments belong to wbc.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// Label the default target selector matches: the Deployments belong to this instance.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label of the ConfigMaps the controller renders; it watches only those.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Configuration of one wbc installation (API and workers) in a namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
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
    printcolumn = r#"{"name": "Data Losses", "type": "integer", "jsonPath": ".status.dataLoss.count",
                      "priority": 1, "description": "Losses of Redis data detected so far"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WriteBehindCacheSpec {
    /// Every pipeline setting, as core declares it (field names, defaults, ranges and descriptions).
    #[serde(flatten)]
    pub settings: Settings,
    /// The Deployments that read the rendered ConfigMap and are rolled when it changes. When unset:
    /// the Deployments labelled app.kubernetes.io/part-of=wbc and app.kubernetes.io/instance=<the name
    /// of this WriteBehindCache>, in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_selector: Option<TargetSelector>,
}

/// Which Deployments to roll, by label.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSelector {
    /// Labels a Deployment must all carry to be a target; at least one.
    // no default in the schema: an empty map is refused at the door (minProperties), and a missing
    // one by the controller, which says why
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("minProperties" = 1))]
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
    /// The losses of Redis data the target pods report, as PostgreSQL records them; absent while none
    /// was ever detected. Each new one is announced by a DataLossDetected Warning event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<DataLossStatus>,
}

/// The record of the losses of Redis data (guarantee 4: never silent).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataLossStatus {
    /// Losses detected so far.
    pub count: u64,
    /// When the last one was detected (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_detected_at: Option<String>,
    /// A lower bound of the writes Redis forgot, summed over the losses; those not yet persisted to
    /// PostgreSQL then are gone.
    pub at_least_writes: u64,
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

impl TargetSelector {
    /// An empty selector would match every Deployment in the namespace; bad label syntax fails every list.
    pub fn check(&self) -> Result<(), String> {
        if self.match_labels.is_empty() {
            return Err("spec.targetSelector.matchLabels: must name at least one label".into());
        }
        for (key, value) in &self.match_labels {
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
}

/// At most 63 characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric (or empty).
fn label_value_ok(value: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge_ok(value.chars().next())
        && edge_ok(value.chars().last())
}

/// `k=v,k2=v2`, the label selector of a set of labels.
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
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
    use wbc_core::{PipelineArgs, settings::leaf};

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
        let mut bounded = 0;
        for leaf in leaf::leaves() {
            let field = leaf.field.split('.').fold(spec.clone(), |schema, name| schema["properties"][name].clone());
            let (Some(min), Some(max)) = (field["minimum"].as_f64(), field["maximum"].as_f64()) else { continue };
            let (env, step) = (leaf.env.as_str(), if field["type"] == "integer" { 1.0 } else { 0.01 });
            assert!(accepted(env, min) && accepted(env, max), "{env}: core refuses {min} or {max}");
            assert!(!accepted(env, max + step), "{env}: core accepts {} beyond the schema", max + step);
            assert!(min - step < 0.0 || !accepted(env, min - step), "{env}: core accepts {} below", min - step);
            bounded += 1;
        }
        assert_eq!(bounded, 5, "batchSize, maxRetries, queueCapacity, retry.multiplier, failureSimulation.rate");
    }

    #[test]
    fn the_schema_defaults_are_the_core_defaults_and_an_empty_spec_takes_them() {
        let spec = spec_schema();
        assert_eq!(spec["properties"]["flushInterval"]["default"], "1s");
        assert_eq!(spec["properties"]["mode"]["default"], "WriteBehind");
        assert_eq!(spec["properties"]["retry"]["default"]["maxDelay"], "30s");
        let empty: WriteBehindCacheSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, WriteBehindCacheSpec::default());
        assert_eq!(empty.settings.batch_size, 500);
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
