//! The controller when a stored object no longer decodes or its watches fail, against a real
//! kube-apiserver of its own: these tests change the CRD, so no other test file shares the server.
mod support;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use support::{TestEnv, edit_spec, install_crd, metric, status_where, wait_for, wait_for_events};
use tokio::sync::Mutex;

/// The tests of this file change the one CRD of their server, so they take turns.
static CRD: Mutex<()> = Mutex::const_new(());

const CRD_NAME: &str = "writebehindcaches.wbc.dev";

/// Lets `spec.batchSize` take a string too, as an earlier, looser schema did.
async fn loosen_batch_size(env: &TestEnv) {
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let path = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/batchSize";
    let loose = json!([{"op": "replace", "path": path,
                        "value": {"x-kubernetes-int-or-string": true, "description": "an older schema"}}]);
    crds.patch(CRD_NAME, &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(loose).unwrap()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cache_that_no_longer_decodes_is_skipped_with_a_warning_and_the_others_are_still_reconciled() {
    let _turn = CRD.lock().await;
    let Some(mut env) = TestEnv::start("undecodable").await else { return };
    env.create_cache("good", json!({})).await;
    status_where(&env, "good", "a status", |s| s.config_hash.is_some()).await;

    // stored while the schema allowed it, then the schema is applied again
    loosen_batch_size(&env).await;
    let bad = json!({"apiVersion": "wbc.dev/v1alpha1", "kind": "WriteBehindCache",
                     "metadata": {"name": "bad"}, "spec": {"batchSize": "lots"}});
    let dynamic = kube::api::ApiResource::erase::<wbc_controller::WriteBehindCache>(&());
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(env.client.clone(), &env.namespace, &dynamic);
    wait_for("the looser schema", || async {
        let object = serde_json::from_value(bad.clone()).unwrap();
        api.create(&Default::default(), &object).await.ok()
    })
    .await;
    install_crd(&env.client).await;

    // a restart lists it among the others: the controller gets ready all the same
    env.stop_controller().await;
    env.start_controller();
    env.controller_ready().await;
    edit_spec(&env, "good", json!({"mode": "WriteThrough"})).await;
    status_where(&env, "good", "generation 2 applied", |s| s.observed_generation == Some(2)).await;
    assert_eq!(env.config_map("good-config").await.data.unwrap()["WRITE_MODE"], "write-through");

    wait_for_events(&env, "bad", &["Undecodable"]).await;
    let skipped = metric(&env.metrics, "wbc_controller_undecodable_objects_total");
    assert!(skipped.is_some_and(|n| n >= 1.0), "{skipped:?}");
    env.stop_controller().await;
}

#[tokio::test]
async fn watches_that_keep_failing_are_counted_and_make_the_controller_unready_until_they_recover() {
    let _turn = CRD.lock().await;
    let Some(mut env) = TestEnv::start("stall").await else { return };
    env.stop_controller().await;
    env.stall_after = Duration::from_secs(3);
    env.start_controller();
    env.controller_ready().await;

    // the resource is no longer served: every list of the caches fails
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    crds.delete(CRD_NAME, &Default::default()).await.unwrap();
    wait_for("the controller to say it is stalled", || async { (!env.is_ready()).then_some(()) }).await;
    let errors = metric(&env.metrics, "wbc_controller_watch_errors_total");
    assert!(errors.is_some_and(|n| n >= 1.0), "{errors:?}");

    install_crd(&env.client).await;
    env.controller_ready().await;
    env.create_cache("after", json!({})).await;
    status_where(&env, "after", "a status", |s| s.config_hash.is_some()).await;
    env.stop_controller().await;
}
