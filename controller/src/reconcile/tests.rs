//! `reconcile` against a mocked API server (tower-test): which requests it makes, in which order.
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::{
    api::apps::v1::Deployment,
    apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry},
    jiff::Timestamp,
};
use kube::{Client, Resource, client::Body};
use serde_json::{Value, json};

use super::*;
use crate::{
    Metrics,
    conditions::{Rollout, reasons},
    crd::WriteBehindCacheSpec,
};

/// One expected request: its method, the start of its path and query, and the answer.
struct Exchange {
    method: Method,
    path: String,
    status: StatusCode,
    answer: Value,
}

fn expect(method: Method, path: &str, answer: Value) -> Exchange {
    Exchange { method, path: path.to_owned(), status: StatusCode::OK, answer }
}

fn not_found(method: Method, path: &str) -> Exchange {
    let answer = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    Exchange { method, path: path.to_owned(), status: StatusCode::NOT_FOUND, answer }
}

/// Runs one reconcile against a server that answers `script` in order, and returns the request bodies.
async fn reconcile_against(wbc: WriteBehindCache, script: Vec<Exchange>) -> (Result<Action>, Vec<Value>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "ns");
    let ctx = Arc::new(Context::new(client, Metrics::new().unwrap(), None));
    let server = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for step in script {
            let (request, respond) = handle.next_request().await.expect("a request");
            let path = request.uri().to_string();
            assert_eq!((request.method(), path.starts_with(&step.path)), (&step.method, true), "{path}");
            let body = request.into_body().collect_bytes().await.unwrap();
            bodies.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            let answer = Response::builder().status(step.status).body(Body::from(step.answer.to_string().into_bytes()));
            respond.send_response(answer.unwrap());
        }
        // no request beyond the script
        assert!(handle.next_request().await.is_none(), "an unexpected request");
        bodies
    });
    let result = reconcile(Arc::new(wbc), ctx).await;
    (result, server.await.unwrap())
}

fn cache(spec: Value) -> WriteBehindCache {
    let spec: WriteBehindCacheSpec = serde_json::from_value(spec).unwrap();
    let mut wbc = WriteBehindCache::new("cache", spec);
    wbc.meta_mut().namespace = Some("ns".into());
    wbc.meta_mut().uid = Some("uid-1".into());
    wbc.meta_mut().generation = Some(3);
    wbc
}

fn targeted(name: &str, hash: Option<&str>) -> Value {
    let mut deployment = Deployment::default();
    deployment.metadata.name = Some(name.into());
    deployment.metadata.uid = Some(format!("uid-{name}"));
    deployment.metadata.generation = Some(1);
    if let Some(hash) = hash {
        deployment.metadata.annotations = Some([(crate::crd::CACHE_ANNOTATION.to_owned(), "cache".to_owned())].into());
        let template = deployment.spec.template.metadata.get_or_insert_default();
        template.annotations = Some([(crate::crd::CONFIG_HASH_ANNOTATION.to_owned(), hash.to_owned())].into());
    }
    serde_json::to_value(deployment).unwrap()
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": items})
}

const CACHE: &str = "/apis/wbc.dev/v1alpha1/namespaces/ns/writebehindcaches/cache";
const CONFIG_MAP: &str = "/api/v1/namespaces/ns/configmaps/cache-config";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ns/deployments";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";
const APPLY: &str = "?&force=true&fieldManager=wbc-controller";

#[tokio::test]
async fn a_new_cache_applies_its_config_map_rolls_its_deployment_and_reports_progress() {
    let wbc = cache(json!({"mode": "WriteThrough"}));
    let rendered = render(&wbc).unwrap();
    let script = vec![
        expect(Method::GET, &format!("{CACHE}/status"), serde_json::to_value(&wbc).unwrap()),
        expect(Method::GET, &format!("{DEPLOYMENTS}?&labelSelector="), list(vec![targeted("api", None)])),
        not_found(Method::GET, CONFIG_MAP),
        expect(Method::PATCH, &format!("{CONFIG_MAP}{APPLY}"), json!({})),
        expect(Method::POST, EVENTS, json!({})),
        expect(Method::PATCH, &format!("{DEPLOYMENTS}/api{APPLY}"), targeted("api", Some(&rendered.hash))),
        expect(Method::POST, EVENTS, json!({})),
        expect(Method::PATCH, &format!("{CACHE}/status{APPLY}"), serde_json::to_value(&wbc).unwrap()),
    ];
    let (result, bodies) = reconcile_against(wbc, script).await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));

    let config_map = &bodies[3];
    assert_eq!(config_map["data"]["WRITE_MODE"], "write-through");
    assert_eq!(config_map["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(config_map["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(config_map["metadata"]["ownerReferences"][1]["uid"], "uid-api");
    assert_eq!(bodies[4]["reason"], events::CONFIG_APPLIED);
    let annotations = &bodies[5]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations[crate::crd::CONFIG_HASH_ANNOTATION], rendered.hash.as_str());
    assert_eq!(bodies[5]["metadata"]["annotations"][crate::crd::CACHE_ANNOTATION], "cache");
    assert_eq!(bodies[6]["reason"], events::ROLLOUT_STARTED);
    let status = &bodies[7]["status"];
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["configHash"], rendered.hash.as_str());
    assert_eq!(status["conditions"][1]["reason"], reasons::ROLLOUT_IN_PROGRESS);
}

#[tokio::test]
async fn an_invalid_spec_writes_only_its_status_and_one_warning() {
    let wbc = cache(json!({"retry": {"initialDelay": "10s", "maxDelay": "1s"}}));
    let script = vec![
        expect(Method::GET, &format!("{CACHE}/status"), serde_json::to_value(&wbc).unwrap()),
        expect(Method::PATCH, &format!("{CACHE}/status{APPLY}"), serde_json::to_value(&wbc).unwrap()),
        expect(Method::POST, EVENTS, json!({})),
    ];
    let (result, bodies) = reconcile_against(wbc, script).await;
    result.unwrap();
    let degraded = &bodies[1]["status"]["conditions"][2];
    assert_eq!((degraded["type"].as_str(), degraded["status"].as_str()), (Some("Degraded"), Some("True")));
    assert_eq!(degraded["reason"], reasons::INVALID_SPEC);
    assert!(degraded["message"].as_str().unwrap().starts_with("spec.retry.initialDelay"), "{degraded}");
    assert_eq!((bodies[2]["type"].as_str(), bodies[2]["reason"].as_str()), (Some("Warning"), Some("InvalidSpec")));
}

#[tokio::test]
async fn an_unchanged_cache_is_only_read() {
    let mut wbc = cache(json!({}));
    let rendered = render(&wbc).unwrap();
    let observed = Observed::Applied {
        hash: rendered.hash.clone(),
        rollout: Rollout::Pending { pending: vec!["api".into()], total: 1 },
        outages: vec![],
        conflicts: vec![],
    };
    wbc.status = Some(WriteBehindCacheStatus {
        observed_generation: Some(3),
        config_hash: Some(rendered.hash.clone()),
        config_map: Some("cache-config".into()),
        conditions: conditions::merge(&[], conditions::desired(&observed), Timestamp::UNIX_EPOCH),
        data_loss: None,
    });
    let api: Deployment = serde_json::from_value(targeted("api", Some(&rendered.hash))).unwrap();
    let mut live_config_map = desired_config_map(&wbc, &rendered, std::slice::from_ref(&api)).unwrap();
    live_config_map.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some(FIELD_MANAGER.into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(json!({"f:data": rendered.data.keys().map(|k| (format!("f:{k}"), json!({})))
            .collect::<serde_json::Map<_, _>>()}))),
        ..Default::default()
    }]);
    let script = vec![
        expect(Method::GET, &format!("{CACHE}/status"), serde_json::to_value(&wbc).unwrap()),
        expect(Method::GET, DEPLOYMENTS, list(vec![targeted("api", Some(&rendered.hash))])),
        expect(Method::GET, CONFIG_MAP, serde_json::to_value(live_config_map).unwrap()),
    ];
    let (result, _) = reconcile_against(wbc, script).await;
    result.unwrap();
}
