//! What users do to the controller's objects, against a real kube-apiserver: two caches selecting one
//! Deployment, keys of their own in its ConfigMap, a cache deleted while a reconcile is queued.
mod support;

use std::sync::Arc;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use support::{TestEnv, condition, event_count, status_where, template_hash, wait_for, wait_for_events};
use wbc_controller::{
    Metrics, WriteBehindCache,
    conditions::{find, types},
    context::Context,
    reconcile::reconcile,
};

/// Wakes the controller up for `names` with an unrelated change and waits until it has reconciled them.
async fn touch(env: &TestEnv, names: &[&str]) {
    let reconciles = env.metrics.reconciles_total();
    for (n, name) in names.iter().enumerate() {
        let patch = Patch::Merge(json!({"metadata": {"annotations": {"example.com/touched": n.to_string()}}}));
        env.api::<WriteBehindCache>().patch(name, &PatchParams::default(), &patch).await.unwrap();
    }
    let want = reconciles + names.len() as u64;
    wait_for("the reconciles", || async { (env.metrics.reconciles_total() >= want).then_some(()) }).await;
    env.settle().await;
}

#[tokio::test]
async fn two_caches_selecting_one_deployment_leave_it_to_the_first_and_the_later_one_is_refused() {
    let Some(mut env) = TestEnv::start("overlap").await else { return };
    env.create_deployment("shared", &[("app", "shared")], "a-config").await;
    let selector = json!({"matchLabels": {"app": "shared"}});
    env.create_cache("a", json!({"targetSelector": selector})).await;
    let a = status_where(&env, "a", "a's rollout", |s| s.config_hash.is_some()).await;
    env.create_cache("b", json!({"mode": "WriteThrough", "targetSelector": selector})).await;

    let conflict = |s: &wbc_controller::WriteBehindCacheStatus| {
        find(&s.conditions, types::DEGRADED).is_some_and(|c| c.status == "True" && c.reason == "TargetConflict")
    };
    let b = status_where(&env, "b", "b refused with TargetConflict", conflict).await;
    let message = condition(&b, types::DEGRADED).2;
    assert!(message.contains("Deployment shared") && message.contains("WriteBehindCache a"), "{message}");
    wait_for_events(&env, "b", &["TargetConflict"]).await;
    env.settle().await;

    // the first keeps it, and reconciling both again writes nothing
    let deployments = env.api::<Deployment>();
    let before = deployments.get("shared").await.unwrap();
    assert_eq!(template_hash(&before), a.config_hash);
    let writes = (env.metrics.writes_total("deployment"), env.metrics.writes_total("event"));
    touch(&env, &["a", "b", "a", "b"]).await;
    let after = deployments.get("shared").await.unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation, "the Deployment was rolled again");
    assert_eq!((env.metrics.writes_total("deployment"), env.metrics.writes_total("event")), writes);
    assert_eq!(condition(&status_where(&env, "a", "a", |_| true).await, types::DEGRADED).0, "False");

    // once the first is gone, the other takes the Deployment over
    env.api::<WriteBehindCache>().delete("a", &DeleteParams::default()).await.unwrap();
    let b = status_where(&env, "b", "b no longer refused", |s| !conflict(s)).await;
    wait_for("b's configuration on the Deployment", || async {
        let shared = deployments.get("shared").await.unwrap();
        (template_hash(&shared) == b.config_hash).then_some(())
    })
    .await;
    env.stop_controller().await;
}

#[tokio::test]
async fn a_key_added_to_the_config_map_by_someone_else_is_left_alone_and_causes_no_writes() {
    let Some(mut env) = TestEnv::start("foreignkey").await else { return };
    env.create_cache("cache", json!({})).await;
    status_where(&env, "cache", "a status", |s| s.config_hash.is_some()).await;
    env.settle().await;

    let config_maps = env.api::<ConfigMap>();
    let by_someone = PatchParams { field_manager: Some("someone".into()), ..Default::default() };
    let foreign = Patch::Merge(json!({"data": {"RUST_LOG": "debug"}}));
    config_maps.patch("cache-config", &by_someone, &foreign).await.unwrap();
    let writes = env.metrics.writes_total("configmap");
    let applied = event_count(&env, "cache", "ConfigApplied").await;
    touch(&env, &["cache", "cache", "cache"]).await;
    assert_eq!(env.metrics.writes_total("configmap"), writes, "the ConfigMap was written again");
    assert_eq!(event_count(&env, "cache", "ConfigApplied").await, applied);
    assert_eq!(config_maps.get("cache-config").await.unwrap().data.unwrap()["RUST_LOG"], "debug");

    // a key the controller owns is put back, and the other one stays
    let owned = Patch::Merge(json!({"data": {"BATCH_SIZE": "1"}}));
    config_maps.patch("cache-config", &by_someone, &owned).await.unwrap();
    let data = wait_for("BATCH_SIZE restored", || async {
        let data = config_maps.get("cache-config").await.unwrap().data.unwrap();
        (data["BATCH_SIZE"] == "500").then_some(data)
    })
    .await;
    assert_eq!(data["RUST_LOG"], "debug");
    env.stop_controller().await;
}

#[tokio::test]
async fn a_reconcile_queued_for_a_cache_deleted_meanwhile_is_no_failure() {
    let Some(mut env) = TestEnv::start("deleted").await else { return };
    let wbc = env.create_cache("gone", json!({})).await;
    status_where(&env, "gone", "a status", |s| s.config_hash.is_some()).await;
    env.stop_controller().await;
    let caches = env.api::<WriteBehindCache>();
    caches.delete("gone", &DeleteParams::default()).await.unwrap();
    wait_for("the cache to be gone", || async { caches.get_opt("gone").await.unwrap().is_none().then_some(()) }).await;

    // the controller's queue still holds the object it saw last
    let metrics = Metrics::new().unwrap();
    let result = reconcile(Arc::new(wbc), Arc::new(Context::new(env.client.clone(), metrics.clone(), None))).await;
    assert!(result.is_ok(), "{result:?}");
    for object in ["configmap", "deployment", "status", "event"] {
        assert_eq!(metrics.writes_total(object), 0, "{object} written for a deleted cache");
    }
}

#[tokio::test]
async fn the_config_map_is_also_owned_by_the_deployments_that_read_it_so_that_it_outlives_its_cache() {
    let Some(mut env) = TestEnv::start("ownedby").await else { return };
    let labels = [("app.kubernetes.io/part-of", "wbc"), ("app.kubernetes.io/instance", "cache")];
    let api = env.create_deployment("api", &labels, "cache-config").await;
    env.create_deployment("bystander", &[("app", "other")], "cache-config").await;
    let wbc = env.create_cache("cache", json!({})).await;
    status_where(&env, "cache", "a status", |s| s.config_hash.is_some()).await;

    let config_map = env.config_map("cache-config").await;
    let owners: Vec<_> = config_map
        .owner_references()
        .iter()
        .map(|o| (o.kind.clone(), o.name.clone(), o.uid.clone(), o.controller.unwrap_or(false)))
        .collect();
    assert_eq!(
        owners,
        [
            ("WriteBehindCache".to_owned(), "cache".to_owned(), wbc.uid().unwrap(), true),
            ("Deployment".to_owned(), "api".to_owned(), api.uid().unwrap(), false),
        ]
    );

    // the cache goes: its ConfigMap stays for the Deployment (the garbage collector honours every owner)
    env.api::<WriteBehindCache>().delete("cache", &DeleteParams::default()).await.unwrap();
    wait_for_events(&env, "cache-config", &[wbc_controller::watch::CONFIG_KEPT]).await;
    env.stop_controller().await;
}

#[tokio::test]
async fn a_selector_that_matches_the_controllers_own_deployment_leaves_it_alone() {
    let Some(mut env) = TestEnv::start("ownself").await else { return };
    let labels = [("app.kubernetes.io/part-of", "wbc"), ("app.kubernetes.io/instance", "cache")];
    env.create_deployment("wbc-controller", &labels, "none").await;
    env.create_deployment("api", &labels, "cache-config").await;
    env.stop_controller().await;
    env.own_deployment = Some(format!("{}/wbc-controller", env.namespace));
    env.start_controller();
    env.controller_ready().await;

    env.create_cache("cache", json!({})).await;
    let status = status_where(&env, "cache", "TargetConflict", |s| {
        find(&s.conditions, types::DEGRADED).is_some_and(|c| c.reason == "TargetConflict")
    })
    .await;
    let message = condition(&status, types::DEGRADED).2;
    assert!(message.contains("Deployment wbc-controller is held by wbc-controller itself"), "{message}");
    let deployments = env.api::<Deployment>();
    assert_eq!(template_hash(&deployments.get("wbc-controller").await.unwrap()), None);
    assert_eq!(template_hash(&deployments.get("api").await.unwrap()), status.config_hash);
    env.stop_controller().await;
}
