//! The controller's health probe against a real kube-apiserver: probing is best effort, so a
//! controller that may not list pods still writes the status.
mod support;

use k8s_openapi::api::{
    core::v1::ServiceAccount,
    rbac::v1::{Role, RoleBinding},
};
use kube::api::PostParams;
use serde::Deserialize;
use serde_json::json;
use support::{TestEnv, client_as, repository, wait_for};
use wbc_controller::{
    WriteBehindCache,
    conditions::{find, reasons, types},
    crd::{INSTANCE_LABEL, PART_OF_LABEL},
};

/// The controller's Role as the chart renders it (`manifests/rendered/wbc.yaml`).
fn chart_role() -> Role {
    let yaml = std::fs::read_to_string(repository().join("manifests/rendered/wbc.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&yaml)
        .map(|document| serde_yaml::Value::deserialize(document).unwrap())
        .find(|object| object["kind"] == "Role" && object["metadata"]["name"] == "wbc-controller")
        .map(|object| serde_yaml::from_value(object).unwrap())
        .expect("the rendered chart has the controller's Role")
}

/// A service account of the test's namespace bound to the chart's Role without the rules that
/// `drop` names; returns the user name the API server knows it by.
async fn service_account_without(env: &TestEnv, drop: &str) -> String {
    let name = "wbc-controller";
    let mut role = chart_role();
    let before = role.rules.as_ref().map_or(0, Vec::len);
    role.rules.get_or_insert_default().retain(|rule| !rule.resources.iter().flatten().any(|r| r == drop));
    assert_eq!(role.rules.as_ref().map_or(0, Vec::len), before - 1, "the chart's Role has one rule on {drop}");
    role.metadata = serde_json::from_value(json!({"name": name})).unwrap();
    env.api::<Role>().create(&PostParams::default(), &role).await.unwrap();
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    env.api::<ServiceAccount>().create(&PostParams::default(), &account).await.unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": env.namespace}],
    }))
    .unwrap();
    env.api::<RoleBinding>().create(&PostParams::default(), &binding).await.unwrap();
    format!("system:serviceaccount:{}:{name}", env.namespace)
}

/// The value of one series in the controller's metrics, if it is there.
fn metric(env: &TestEnv, series: &str) -> Option<f64> {
    let text = String::from_utf8(env.metrics.render().unwrap()).unwrap();
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn a_controller_that_may_not_list_pods_still_writes_the_status_and_counts_the_failed_probe() {
    let Some(mut env) = TestEnv::start("unprobed").await else { return };
    env.stop_controller().await;
    let user = service_account_without(&env, "pods").await;
    env.start_controller_as(client_as(env.server, &user).await);
    env.controller_ready().await;
    let labels = [(PART_OF_LABEL, "wbc"), (INSTANCE_LABEL, "cache")];
    env.create_deployment("api", &labels, "cache-config").await;
    env.create_cache("cache", json!({})).await;

    let api = env.api::<WriteBehindCache>();
    let status = wait_for("a status though the pods cannot be listed", || async {
        api.get("cache").await.unwrap().status.filter(|s| s.observed_generation == Some(1))
    })
    .await;
    let progressing = find(&status.conditions, types::PROGRESSING).expect("Progressing");
    assert_eq!((progressing.status.as_str(), progressing.reason.as_str()), ("True", reasons::ROLLOUT_IN_PROGRESS));
    let degraded = find(&status.conditions, types::DEGRADED).expect("Degraded");
    assert_eq!(degraded.status, "False", "{degraded:?}");
    let failed = r#"wbc_controller_health_probe_failures_total{step="list_pods"}"#;
    wait_for("the failed pod list to be counted", || async { metric(&env, failed).filter(|n| *n >= 1.0) }).await;
    let reconcile_failures = r#"wbc_controller_reconcile_failures_total{error="api_refused"}"#;
    assert_eq!(metric(&env, reconcile_failures), Some(0.0), "a failed probe fails no reconcile");
    env.stop_controller().await;
}
