//! The controller against a real kube-apiserver: ConfigMaps, rollouts, status, events and idempotence.
mod support;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use support::{TestEnv, condition, edit_spec, status_where, template_hash, wait_for, wait_for_events};
use wbc_controller::{
    WriteBehindCache,
    conditions::{reasons, types},
    crd::{INSTANCE_LABEL, PART_OF_LABEL},
};

fn labels_of(instance: &str) -> [(&'static str, String); 2] {
    [(PART_OF_LABEL, "wbc".to_owned()), (INSTANCE_LABEL, instance.to_owned())]
}

async fn create_targets(env: &TestEnv, instance: &str, names: &[&str]) {
    let labels = labels_of(instance);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for name in names {
        env.create_deployment(name, &labels, &format!("{instance}-config")).await;
    }
}

async fn hashes(env: &TestEnv, names: &[&str]) -> Vec<Option<String>> {
    let api = env.api::<Deployment>();
    let mut hashes = Vec::new();
    for name in names {
        hashes.push(template_hash(&api.get(name).await.unwrap()));
    }
    hashes
}

#[tokio::test]
async fn a_cache_becomes_a_config_map_with_its_configuration_and_an_owner_reference() {
    let Some(mut env) = TestEnv::start("configmap").await else { return };
    let wbc = env.create_cache("cache", json!({"flushInterval": "500ms", "batchSize": 250})).await;

    let config_map = env.config_map("cache-config").await;
    let data = config_map.data.clone().unwrap();
    assert_eq!(data["FLUSH_INTERVAL"], "500ms");
    assert_eq!(data["BATCH_SIZE"], "250");
    assert_eq!(data["WRITE_MODE"], "write-behind");
    let owner = &config_map.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("WriteBehindCache", "cache"));
    assert_eq!((owner.uid.as_str(), owner.controller), (wbc.uid().unwrap().as_str(), Some(true)));
    let managers: Vec<_> = config_map.managed_fields().iter().filter_map(|m| m.manager.clone()).collect();
    assert_eq!(managers, ["wbc-controller"]);

    let status = status_where(&env, "cache", "a status", |s| s.config_hash.is_some()).await;
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.config_map.as_deref(), Some("cache-config"));
    assert_eq!(condition(&status, types::READY).1, reasons::NO_TARGETS);
    assert_eq!(condition(&status, types::DEGRADED).0, "False");
    wait_for_events(&env, "cache", &["ConfigApplied"]).await;

    // the ConfigMap is owned: deleting it brings it back
    env.api::<ConfigMap>().delete("cache-config", &DeleteParams::default()).await.unwrap();
    wait_for("the ConfigMap to come back", || async {
        let again = env.api::<ConfigMap>().get_opt("cache-config").await.unwrap()?;
        (again.uid() != config_map.uid()).then_some(again)
    })
    .await;
    env.stop_controller().await;
}

#[tokio::test]
async fn editing_the_mode_updates_the_config_map_and_rolls_only_the_target_deployments() {
    let Some(mut env) = TestEnv::start("mode").await else { return };
    create_targets(&env, "cache", &["api", "worker"]).await;
    create_targets(&env, "other", &["bystander"]).await;
    env.create_cache("cache", json!({})).await;

    let first = status_where(&env, "cache", "a first rollout", |s| {
        s.conditions.iter().any(|c| c.reason == reasons::ROLLOUT_IN_PROGRESS)
    })
    .await;
    let first_hash = first.config_hash.clone().unwrap();
    assert_eq!(hashes(&env, &["api", "worker"]).await, [Some(first_hash.clone()), Some(first_hash.clone())]);

    edit_spec(&env, "cache", json!({"mode": "WriteThrough"})).await;
    let second = status_where(&env, "cache", "generation 2", |s| s.observed_generation == Some(2)).await;
    let second_hash = second.config_hash.clone().unwrap();
    assert_ne!(second_hash, first_hash);
    let data = env.config_map("cache-config").await.data.unwrap();
    assert_eq!(data["WRITE_MODE"], "write-through");
    assert_eq!(hashes(&env, &["api", "worker"]).await, [Some(second_hash.clone()), Some(second_hash.clone())]);
    assert_eq!(hashes(&env, &["bystander"]).await, [None], "a Deployment of another instance was rolled");

    // without a Deployment controller (an API server alone) the rollout never finishes
    let (ready, reason, message) = condition(&second, types::READY);
    assert_eq!((ready.as_str(), reason.as_str()), ("False", reasons::ROLLOUT_IN_PROGRESS));
    assert!(message.contains("api, worker"), "{message}");
    assert_eq!(condition(&second, types::PROGRESSING).0, "True");
    wait_for_events(&env, "cache", &["ConfigApplied", "RolloutStarted"]).await;

    // play the Deployment controller: once both report the new pods available, the cache is Ready
    for name in ["api", "worker"] {
        let deployments = env.api::<Deployment>();
        let generation = deployments.get(name).await.unwrap().metadata.generation;
        let status = json!({"status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
                                       "availableReplicas": 1, "readyReplicas": 1}});
        deployments.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    }
    let ready = status_where(&env, "cache", "Ready", |s| condition(s, types::READY).0 == "True").await;
    assert_eq!(condition(&ready, types::READY).1, reasons::ROLLOUT_COMPLETE);
    assert_eq!(condition(&ready, types::PROGRESSING).0, "False");
    env.stop_controller().await;
}

#[tokio::test]
async fn a_semantically_invalid_spec_is_degraded_and_changes_nothing() {
    let Some(mut env) = TestEnv::start("invalid").await else { return };
    create_targets(&env, "cache", &["api"]).await;
    env.create_cache("cache", json!({})).await;
    let good = status_where(&env, "cache", "a rollout", |s| s.config_hash.is_some()).await;
    env.settle().await;
    let config_map = env.config_map("cache-config").await;
    let deployment = env.api::<Deployment>().get("api").await.unwrap();

    edit_spec(&env, "cache", json!({"retry": {"initialDelay": "10s", "maxDelay": "1s"}})).await;
    let bad = status_where(&env, "cache", "Degraded", |s| s.observed_generation == Some(2)).await;
    let (degraded, reason, message) = condition(&bad, types::DEGRADED);
    assert_eq!((degraded.as_str(), reason.as_str()), ("True", reasons::INVALID_SPEC));
    assert!(message.starts_with("spec.retry.initialDelay: "), "{message}");
    assert_eq!(
        condition(&bad, types::READY),
        ("False".into(), reasons::INVALID_SPEC.into(), bad.conditions[0].message.clone())
    );
    assert_eq!(bad.config_hash, good.config_hash, "the status lost the last good configuration");
    wait_for_events(&env, "cache", &["InvalidSpec"]).await;
    env.settle().await;
    let still = env.api::<ConfigMap>().get("cache-config").await.unwrap();
    assert_eq!(still.resource_version(), config_map.resource_version(), "the ConfigMap was written");
    let still = env.api::<Deployment>().get("api").await.unwrap();
    assert_eq!(still.resource_version(), deployment.resource_version(), "the Deployment was rolled");

    // fixing the spec applies it
    edit_spec(&env, "cache", json!({"retry": {"maxDelay": "30s"}})).await;
    let fixed = status_where(&env, "cache", "generation 3", |s| s.observed_generation == Some(3)).await;
    assert_eq!(condition(&fixed, types::DEGRADED).0, "False");
    assert_eq!(env.config_map("cache-config").await.data.unwrap()["RETRY_INITIAL_DELAY"], "10s");

    // a cache that is invalid from the start gets no ConfigMap at all
    env.create_cache("broken", json!({"flushInterval": "1s", "leaseTimeout": "500ms"})).await;
    let broken = status_where(&env, "broken", "Degraded", |s| s.observed_generation == Some(1)).await;
    let (_, reason, message) = condition(&broken, types::DEGRADED);
    assert_eq!(reason, reasons::INVALID_SPEC);
    assert!(message.starts_with("spec.leaseTimeout: "), "{message}");
    assert!(env.api::<ConfigMap>().get_opt("broken-config").await.unwrap().is_none());
    env.stop_controller().await;
}

#[tokio::test]
async fn a_reconcile_of_an_unchanged_cache_writes_nothing() {
    let Some(mut env) = TestEnv::start("unchanged").await else { return };
    create_targets(&env, "cache", &["api", "worker"]).await;
    env.create_cache("cache", json!({"mode": "WriteThrough"})).await;
    status_where(&env, "cache", "a rollout", |s| s.config_hash.is_some()).await;
    env.settle().await;

    let caches = env.api::<WriteBehindCache>();
    let deployments = env.api::<Deployment>();
    let config_map = env.api::<ConfigMap>().get("cache-config").await.unwrap().resource_version();
    let targets: Vec<_> =
        deployments.list(&Default::default()).await.unwrap().iter().map(|d| d.resource_version()).collect();
    let writes =
        |m: &wbc_controller::Metrics| ["configmap", "deployment", "status", "event"].map(|o| m.writes_total(o));
    let writes_before = writes(&env.metrics);

    // an unrelated change to the resource wakes the controller up
    let reconciles = env.metrics.reconciles_total();
    let touch = Patch::Merge(json!({"metadata": {"annotations": {"example.com/touched": "yes"}}}));
    let touched = caches.patch("cache", &PatchParams::default(), &touch).await.unwrap();
    wait_for("a reconcile", || async { (env.metrics.reconciles_total() > reconciles).then_some(()) }).await;
    // and so does a controller restart, which lists everything again
    env.stop_controller().await;
    let reconciles = env.metrics.reconciles_total();
    env.start_controller();
    wait_for("a reconcile", || async { (env.metrics.reconciles_total() > reconciles).then_some(()) }).await;
    env.settle().await;

    assert_eq!(env.api::<ConfigMap>().get("cache-config").await.unwrap().resource_version(), config_map);
    let now: Vec<_> =
        deployments.list(&Default::default()).await.unwrap().iter().map(|d| d.resource_version()).collect();
    assert_eq!(now, targets, "a Deployment was written");
    assert_eq!(caches.get("cache").await.unwrap().resource_version(), touched.resource_version(), "status churn");
    assert_eq!(writes(&env.metrics), writes_before);
    env.stop_controller().await;
}

#[tokio::test]
async fn a_target_selector_picks_the_deployments_to_roll_and_an_empty_one_is_refused() {
    let Some(mut env) = TestEnv::start("selector").await else { return };
    let custom = [("tier", "cache")];
    env.create_deployment("picked", &custom, "cache-config").await;
    create_targets(&env, "cache", &["default-target"]).await;
    env.create_cache("cache", json!({"targetSelector": {"matchLabels": {"tier": "cache"}}})).await;
    let status = status_where(&env, "cache", "a rollout", |s| s.config_hash.is_some()).await;
    assert_eq!(hashes(&env, &["picked", "default-target"]).await, [status.config_hash.clone(), None]);

    // the schema's default turns a removed matchLabels into an empty one
    edit_spec(&env, "cache", json!({"targetSelector": {"matchLabels": null}})).await;
    let bad = status_where(&env, "cache", "Degraded", |s| s.observed_generation == Some(2)).await;
    assert!(condition(&bad, types::DEGRADED).2.starts_with("spec.targetSelector.matchLabels"));
    env.stop_controller().await;
}
