//! The CRD on a real kube-apiserver: its columns, its defaults, what it refuses; and the controller's
//! own process: endpoints and graceful shutdown.
mod support;

use std::process::{Command, Stdio};

use kube::{
    Api,
    api::{ApiResource, DynamicObject, PostParams},
};
use nix::{sys::signal, unistd::Pid};
use serde_json::json;
use support::{TestEnv, api_server, client, install_crd, wait_for};
use wbc_controller::WriteBehindCache;
use wbc_core::PipelineArgs;

fn kubectl(env: &TestEnv) -> Command {
    let found = Command::new("kubectl").arg("version").arg("--client").output().is_ok_and(|o| o.status.success());
    assert!(found, "kubectl is not installed (`make deps` installs Debian's kubernetes-client)");
    let mut command = Command::new("kubectl");
    command.arg("--kubeconfig").arg(&env.server.kubeconfig).arg("--namespace").arg(&env.namespace);
    command
}

#[tokio::test]
async fn the_generated_crd_is_served_with_columns_for_mode_flush_interval_ready_and_age() {
    let Some(server) = api_server() else { return };
    let crd = install_crd(&client(server).await).await;
    assert_eq!(crd.spec.names.short_names, Some(vec!["wbc".to_owned()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let columns: Vec<(String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect();
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["Mode", "Flush Interval", "Ready", "Degraded", "Reason", "Data Losses", "Age"]);
    assert_eq!(columns[2].1, r#".status.conditions[?(@.type=="Ready")].status"#);
    assert_eq!(columns[3].1, r#".status.conditions[?(@.type=="Degraded")].status"#);
}

#[tokio::test]
async fn kubectl_get_wbc_prints_the_mode_flush_interval_and_readiness() {
    let Some(mut env) = TestEnv::start("columns").await else { return };
    env.create_cache("cache", json!({"flushInterval": "2s"})).await;
    let api = env.api::<WriteBehindCache>();
    wait_for("a status", || async { api.get("cache").await.unwrap().status }).await;
    env.stop_controller().await;
    let mut kubectl = kubectl(&env);
    let out = kubectl.args(["get", "wbc"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "MODE", "FLUSH", "INTERVAL", "READY", "DEGRADED", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row[..5], ["cache", "WriteBehind", "2s", "False", "False"], "{table}");
}

#[tokio::test]
async fn an_empty_spec_is_valid_and_renders_the_defaults() {
    let Some(mut env) = TestEnv::start("empty").await else { return };
    let created = env.create_cache("cache", json!({})).await;
    // the API server fills in the schema's defaults
    assert_eq!(created.spec, wbc_controller::WriteBehindCacheSpec::default());
    let data = env.config_map("cache-config").await.data.unwrap();
    let defaults = PipelineArgs::from_env(std::iter::empty()).unwrap().to_env();
    let defaults: std::collections::BTreeMap<String, String> =
        defaults.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(data, defaults);
    env.stop_controller().await;
}

#[tokio::test]
async fn an_invalid_resource_is_refused_with_a_message_that_names_the_field() {
    let Some(mut env) = TestEnv::start("refused").await else { return };
    env.stop_controller().await;
    let resource = ApiResource::erase::<WriteBehindCache>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.namespace, &resource);
    for (spec, field) in [
        (json!({"batchSize": 0}), "spec.batchSize"),
        (json!({"batchSize": "many"}), "spec.batchSize"),
        (json!({"maxRetries": 101}), "spec.maxRetries"),
        (json!({"mode": "WriteSideways"}), "spec.mode"),
        (json!({"overflowPolicy": "Drop"}), "spec.overflowPolicy"),
        (json!({"flushInterval": "soon"}), "spec.flushInterval"),
        (json!({"flushInterval": 5}), "spec.flushInterval"),
        (json!({"retry": {"multiplier": 0.5}}), "spec.retry.multiplier"),
        (json!({"failureSimulation": {"rate": 1.5}}), "spec.failureSimulation.rate"),
        (json!({"failureSimulation": {"kind": "Sometimes"}}), "spec.failureSimulation.kind"),
    ] {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "wbc.dev/v1alpha1", "kind": "WriteBehindCache",
            "metadata": {"name": "bad"}, "spec": spec,
        }))
        .unwrap();
        let error = api.create(&PostParams::default(), &object).await.expect_err(&format!("{spec} was accepted"));
        let kube::Error::Api(status) = error else { panic!("{spec}: {error}") };
        assert_eq!(status.code, 422, "{spec}: {status:?}");
        assert!(status.message.contains(&format!("{field}:")), "{spec}: {}", status.message);
    }
    assert!(api.list(&Default::default()).await.unwrap().items.is_empty());

    let mut apply =
        kubectl(&env).args(["apply", "-f", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let manifest =
        "apiVersion: wbc.dev/v1alpha1\nkind: WriteBehindCache\nmetadata: {name: bad}\nspec: {batchSize: 0}\n";
    std::io::Write::write_all(apply.stdin.as_mut().unwrap(), manifest.as_bytes()).unwrap();
    let out = apply.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("spec.batchSize"), "{stderr}");
}

#[tokio::test]
async fn the_controller_process_serves_its_endpoints_and_stops_gracefully_on_sigterm() {
    let Some(mut env) = TestEnv::start("process").await else { return };
    env.stop_controller().await;
    env.create_cache("cache", json!({})).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut process = Command::new(env!("CARGO_BIN_EXE_wbc-controller"))
        .env("KUBECONFIG", &env.server.kubeconfig)
        .env("WATCH_NAMESPACE", &env.namespace)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("http://127.0.0.1:{port}{path}"));
        async move {
            let response = request.send().await.ok()?;
            let ok = response.status().is_success();
            ok.then_some(response.text().await.ok()?)
        }
    };
    wait_for("/readyz", || get("/readyz")).await;
    assert_eq!(get("/healthz").await.as_deref(), Some("ok"));
    env.config_map("cache-config").await;
    let metrics = wait_for("/metrics", || get("/metrics")).await;
    assert!(metrics.contains("wbc_controller_reconciles_total"), "{metrics}");
    assert!(metrics.contains("wbc_controller_reconcile_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("wbc_controller_reconcile_failures_total"), "{metrics}");

    signal::kill(Pid::from_raw(process.id() as i32), signal::Signal::SIGTERM).unwrap();
    let exited = wait_for("the process to exit", || std::future::ready(process.try_wait().unwrap())).await;
    assert!(exited.success(), "{exited}");
    let mut logs = String::new();
    std::io::Read::read_to_string(process.stdout.as_mut().unwrap(), &mut logs).unwrap();
    let reconcile_line = logs.lines().find(|l| l.contains("configuration applied")).unwrap_or_else(|| panic!("{logs}"));
    let line: serde_json::Value = serde_json::from_str(reconcile_line).unwrap();
    assert_eq!(line["span"]["name"], "reconcile", "a reconcile's log line carries its span: {line}");
    assert!(logs.contains("controller stopped"), "{logs}");
}

#[tokio::test]
async fn the_delete_cache_command_deletes_a_cache_and_takes_a_missing_one_calmly() {
    let Some(mut env) = TestEnv::start("deletecache").await else { return };
    env.stop_controller().await;
    env.create_cache("chart", json!({})).await;
    let delete = || {
        Command::new(env!("CARGO_BIN_EXE_wbc-controller"))
            .env("KUBECONFIG", &env.server.kubeconfig)
            .args(["delete-cache", "--namespace", &env.namespace, "--name", "chart"])
            .status()
            .unwrap()
    };
    assert!(delete().success());
    assert!(env.api::<WriteBehindCache>().get_opt("chart").await.unwrap().is_none(), "the cache is still there");
    assert!(delete().success(), "a missing cache failed the hook");
}
