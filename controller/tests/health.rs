//! The controller's health probe against a real kube-apiserver: probing is best effort, so a
//! controller that may not list pods still writes the status; and a loss of Redis data that a real
//! worker reports becomes one Warning event and the status.
mod support;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{
    core::v1::{Pod, ServiceAccount},
    events::v1::Event,
    rbac::v1::{Role, RoleBinding},
};
use kube::api::{Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde_json::json;
use support::{TestEnv, client_as, repository, wait_for};
use tokio::sync::watch;
use wbc_controller::{
    WriteBehindCache,
    conditions::{events, find, reasons, types},
    crd::{INSTANCE_LABEL, PART_OF_LABEL},
};
use wbc_core::{
    ProductInput, StoreArgs, db,
    testkit::{PgServer, RedisServer, pipeline},
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

/// Real Redis (without persistence) and PostgreSQL, and a real worker in-process serving its
/// `/readyz` on a loopback port.
struct LoopbackWorker {
    redis: RedisServer,
    _pg: PgServer,
    store: StoreArgs,
    pool: wbc_core::PgPool,
    port: u16,
    stop: watch::Sender<bool>,
}

impl LoopbackWorker {
    async fn start() -> Self {
        let (redis, pg) = (RedisServer::start(), PgServer::start());
        let store = StoreArgs::new(redis.url(), pg.url());
        let flags = pipeline(&[("flush-interval", "1h")]);
        let (worker, ops) =
            wbc_worker::Worker::connect(&store, flags, "w1".into(), Duration::from_secs(1)).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move { axum::serve(listener, wbc_core::ops::router(ops)).await.unwrap() });
        tokio::spawn(Arc::new(worker).run(stopped));
        let pool = db::connect(&pg.url(), 2, Duration::from_secs(5)).await.unwrap();
        Self { redis, _pg: pg, store, pool, port, stop }
    }

    /// Writes `n` products through Redis and waits until the worker has remembered them in PostgreSQL.
    async fn write(&self, n: i64) {
        let redis = wbc_core::Store::connect(&self.store.redis().unwrap()).await.unwrap();
        let input: ProductInput = serde_json::from_value(json!({"name": "doomed", "price": 1, "quantity": 1})).unwrap();
        for i in 0..n {
            redis.write(&format!("k{i}"), Some(&input), 1000, None, Some(0)).await.unwrap();
        }
        wait_for("the worker to remember Redis's write sequence", || async {
            let seq = db::meta(&self.pool, db::SEQ_KEY).await.unwrap();
            seq.and_then(|s| s.parse::<i64>().ok()).filter(|s| *s >= n)
        })
        .await;
    }
}

impl Drop for LoopbackWorker {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A running pod of the Deployment `app` (as the Deployment's selector picks it) whose container
/// port `metrics` is `port` on 127.0.0.1; its status is written through the status subresource, as
/// a kubelet would.
async fn running_pod(env: &TestEnv, app: &str, port: u16) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{app}-0"), "labels": {"app": app}},
        "spec": {"automountServiceAccountToken": false, "containers": [{
            "name": app, "image": "k8s.local/wbc:test",
            "ports": [{"name": "metrics", "containerPort": port}],
        }]},
    }))
    .unwrap();
    // without kube-controller-manager nobody makes the namespace's default service account
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    env.api::<ServiceAccount>().create(&PostParams::default(), &account).await.unwrap();
    let api = env.api::<Pod>();
    api.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}});
    api.patch_status(&format!("{app}-0"), &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

/// The notes of the DataLossDetected events about `name`, and whether each is a Warning.
async fn loss_events(env: &TestEnv, name: &str) -> Vec<(bool, String)> {
    let events = env.api::<Event>().list(&Default::default()).await.unwrap();
    let about = |e: &&Event| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name);
    let losses = |e: &&Event| e.reason.as_deref() == Some(events::DATA_LOSS_DETECTED);
    let note = |e: &Event| (e.type_.as_deref() == Some("Warning"), e.note.clone().unwrap_or_default());
    events.items.iter().filter(about).filter(losses).map(note).collect()
}

/// Makes the controller run at least `n` more reconciles of `name` than it started so far, so that
/// `n - 1` of them ran to their end (kube-runtime never runs two of one object at once): each edit of
/// an annotation wakes it at once, rather than after `RESYNC`.
async fn reconciles(env: &TestEnv, name: &str, n: u64) {
    let target = env.metrics.reconciles_total() + n;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for poke in 0.. {
        if env.metrics.reconciles_total() >= target {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the controller stopped reconciling");
        let patch = Patch::Merge(json!({"metadata": {"annotations": {"test.wbc.dev/poke": poke.to_string()}}}));
        env.api::<WriteBehindCache>().patch(name, &PatchParams::default(), &patch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loss_of_redis_data_is_one_warning_event_and_the_status_even_across_a_controller_restart() {
    let Some(mut env) = TestEnv::start("dataloss").await else { return };
    let mut worker = LoopbackWorker::start().await;
    worker.write(3).await;
    env.create_deployment("worker", &[(PART_OF_LABEL, "wbc"), (INSTANCE_LABEL, "cache")], "cache-config").await;
    running_pod(&env, "worker", worker.port).await;
    env.create_cache("cache", json!({})).await;
    let api = env.api::<WriteBehindCache>();
    let before = wait_for("a status", || async {
        api.get("cache").await.unwrap().status.filter(|s| s.observed_generation == Some(1))
    })
    .await;
    assert_eq!(before.data_loss, None, "nothing was lost yet");

    worker.redis.restart(); // without persistence: Redis comes back empty
    wait_for("the worker to detect the loss", || async {
        db::data_losses(&worker.pool).await.ok().filter(|l| l.count == 1)
    })
    .await;
    reconciles(&env, "cache", 2).await;
    let loss = api.get("cache").await.unwrap().status.and_then(|s| s.data_loss).expect("the loss in the status");
    assert_eq!((loss.count, loss.at_least_writes), (1, 3));
    let recorded = db::data_losses(&worker.pool).await.unwrap().last_detected_at_ms.unwrap();
    let at = loss.last_detected_at.clone().unwrap().parse::<k8s_openapi::jiff::Timestamp>().unwrap();
    assert_eq!(at.as_millisecond(), recorded as i64, "the time the worker recorded");
    let one = loss_events(&env, "cache").await;
    assert_eq!(one.len(), 1, "{one:?}");
    assert!(one[0].0, "a Warning: {one:?}");
    assert!(one[0].1.contains("at least 3 writes"), "{one:?}");
    reconciles(&env, "cache", 3).await;
    assert_eq!(loss_events(&env, "cache").await, one, "announced once");

    env.stop_controller().await;
    env.start_controller();
    env.controller_ready().await;
    reconciles(&env, "cache", 3).await;
    assert_eq!(loss_events(&env, "cache").await, one, "a restarted controller does not announce it again");
    assert_eq!(api.get("cache").await.unwrap().status.unwrap().data_loss, Some(loss));
    env.stop_controller().await;
}
