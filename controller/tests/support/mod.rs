//! A real kube-apiserver for the tests (one per test process, from `scripts/k8s-apiserver.sh`), and a
//! controller per test, in-process and scoped to the test's own namespace.
#![allow(dead_code)] // each test file uses a part

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace},
        events::v1::Event,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;
use tokio::{sync::oneshot, task::JoinHandle};
use wbc_controller::{
    Metrics, Readiness, Scope, WriteBehindCache, WriteBehindCacheStatus, conditions::find, manifests::CRD_PATH,
};

/// The running test server.
pub struct ApiServer {
    pub kubeconfig: PathBuf,
    pub run_dir: PathBuf,
}

static SERVER: OnceLock<Result<ApiServer, String>> = OnceLock::new();
static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

/// Repository root.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The variable with which a person asks to skip the tests that need a kube-apiserver.
pub const SKIP_VARIABLE: &str = "WBC_SKIP_K8S_TESTS";

/// The server of this test process, built and started on first use. `None` only when a person
/// asked to skip these tests (`WBC_SKIP_K8S_TESTS=1`): the skip is printed and recorded. A server
/// that cannot be built or started fails the test.
pub fn api_server() -> Option<&'static ApiServer> {
    if std::env::var(SKIP_VARIABLE).is_ok_and(|v| v == "1") {
        skipped(&format!("{SKIP_VARIABLE}=1 asks to skip the tests that need a kube-apiserver"));
        return None;
    }
    match SERVER.get_or_init(start_api_server) {
        Ok(server) => Some(server),
        Err(reason) => panic!("{reason}; set {SKIP_VARIABLE}=1 to skip these tests on purpose"),
    }
}

/// Prints a skip as `SKIPPED: …` and appends it to the file named by `WBC_SKIPPED_LOG`, where
/// `make test` counts the skips of the run.
pub fn skipped(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("SKIPPED: {test}: {reason}");
    if let Ok(path) = std::env::var("WBC_SKIPPED_LOG") {
        use std::io::Write;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
        let _ = file.and_then(|mut f| writeln!(f, "SKIPPED: {test}: {reason}"));
    }
}

fn start_api_server() -> Result<ApiServer, String> {
    let script = repository().join("scripts/k8s-apiserver.sh");
    // cached after the first time; `make test` builds it before the tests run
    let build = Command::new(&script).arg("build").status().expect("scripts/k8s-apiserver.sh runs");
    match build.code() {
        Some(0) => {}
        Some(3) => {
            return Err("kube-apiserver cannot be built on this machine (see the message above), so the \
                        controller's integration tests cannot run here"
                .into());
        }
        _ => panic!("`scripts/k8s-apiserver.sh build` failed: {build}"),
    }
    // the script stops the server itself once this process has exited
    let started = Command::new(&script)
        .arg("start")
        .env("WBC_K8S_OWNER_PID", std::process::id().to_string())
        .env_remove("WBC_K8S_RUN")
        .output()
        .expect("scripts/k8s-apiserver.sh runs");
    let stdout = String::from_utf8_lossy(&started.stdout);
    assert!(started.status.success(), "kube-apiserver did not start: {}", String::from_utf8_lossy(&started.stderr));
    let value = |key: &str| {
        let line = stdout.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {stdout}"));
        PathBuf::from(line)
    };
    Ok(ApiServer { kubeconfig: value("KUBECONFIG="), run_dir: value("RUN=") })
}

/// A client of the test server.
pub async fn client(server: &ApiServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// A client of the test server that acts as `user` (impersonated by the admin), so that RBAC
/// decides what it may do.
pub async fn client_as(server: &ApiServer, user: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).unwrap()
}

/// Applies the committed CRD (`manifests/crd.yaml`) and waits until it is served.
pub async fn install_crd(client: &Client) -> CustomResourceDefinition {
    let yaml = std::fs::read_to_string(repository().join(CRD_PATH)).unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut apply = serde_json::to_value(&crd).unwrap();
    apply["apiVersion"] = json!("apiextensions.k8s.io/v1");
    apply["kind"] = json!("CustomResourceDefinition");
    api.patch(&crd.name_any(), &PatchParams::apply("wbc-tests").force(), &Patch::Apply(&apply)).await.unwrap();
    wait_for("the CRD to be established", || async {
        let crd = api.get(&crd.name_any()).await.ok()?;
        let conditions = crd.status.as_ref()?.conditions.as_ref()?;
        conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(crd)
    })
    .await
}

/// A test's namespace, with its own controller running in-process.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub metrics: Metrics,
    pub server: &'static ApiServer,
    /// The Deployment (`namespace/name`) the next controller started takes for its own.
    pub own_deployment: Option<String>,
    /// How long the next controller started may fail to watch before it says it is not ready.
    pub stall_after: Duration,
    readiness: Readiness,
    shutdown: Option<oneshot::Sender<()>>,
    controller: Option<JoinHandle<()>>,
}

impl TestEnv {
    /// A fresh namespace named after the test, the CRD, and a controller watching that namespace.
    pub async fn start(test: &str) -> Option<Self> {
        let server = api_server()?;
        let client = client(server).await;
        install_crd(&client).await;
        let namespace = format!("{test}-{}-{}", std::process::id(), NAMESPACES.fetch_add(1, Ordering::Relaxed));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
        let metrics = Metrics::new().unwrap();
        let readiness = Readiness::default();
        let mut env = Self {
            client,
            namespace,
            metrics,
            readiness,
            server,
            own_deployment: None,
            stall_after: wbc_controller::metrics::STALL_AFTER,
            shutdown: None,
            controller: None,
        };
        env.start_controller();
        env.controller_ready().await;
        Some(env)
    }

    /// Starts the controller (again) for this namespace.
    pub fn start_controller(&mut self) {
        self.start_controller_as(self.client.clone());
    }

    /// Starts the controller (again) for this namespace, making its requests with `client`.
    pub fn start_controller_as(&mut self, client: Client) {
        let (tx, rx) = oneshot::channel();
        let scope = Scope {
            namespace: Some(self.namespace.clone()),
            instance: None,
            own_deployment: self.own_deployment.clone(),
        };
        let readiness = Readiness::with_stall_after(self.stall_after);
        let run = wbc_controller::run(client, scope, self.metrics.clone(), readiness.clone(), async {
            rx.await.ok();
        });
        self.shutdown = Some(tx);
        self.controller = Some(tokio::spawn(run));
        self.readiness = readiness;
    }

    /// Whether the controller says it is ready.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Waits until the controller has listed what it watches.
    pub async fn controller_ready(&self) {
        wait_for("the controller's watches", || async { self.readiness.is_ready().then_some(()) }).await
    }

    /// Stops the controller gracefully.
    pub async fn stop_controller(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(controller) = self.controller.take() {
            tokio::time::timeout(Duration::from_secs(10), controller).await.expect("graceful shutdown").unwrap();
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates a `WriteBehindCache` from its spec.
    pub async fn create_cache(&self, name: &str, spec: serde_json::Value) -> WriteBehindCache {
        let wbc: WriteBehindCache = serde_json::from_value(json!({
            "apiVersion": "wbc.dev/v1alpha1", "kind": "WriteBehindCache",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        self.api::<WriteBehindCache>().create(&PostParams::default(), &wbc).await.unwrap()
    }

    /// Creates a Deployment with these labels that reads the ConfigMap `config_map`.
    pub async fn create_deployment(&self, name: &str, labels: &[(&str, &str)], config_map: &str) -> Deployment {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{
                        "name": name, "image": "k8s.local/wbc:test",
                        "envFrom": [{"configMapRef": {"name": config_map}}],
                    }]},
                },
            },
        }))
        .unwrap();
        self.api::<Deployment>().create(&PostParams::default(), &deployment).await.unwrap()
    }

    /// The ConfigMap, once it exists.
    pub async fn config_map(&self, name: &str) -> ConfigMap {
        let api = self.api::<ConfigMap>();
        wait_for(&format!("ConfigMap {name}"), || async { api.get_opt(name).await.unwrap() }).await
    }

    /// Waits until no reconcile has started for a second, so that the state is settled.
    pub async fn settle(&self) {
        let mut last = self.metrics.reconciles_total();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.metrics.reconciles_total();
            if now == last {
                return;
            }
            last = now;
        }
    }
}

/// The config-hash annotation of a Deployment's pod template.
pub fn template_hash(deployment: &Deployment) -> Option<String> {
    let annotations = deployment.spec.template.metadata.as_ref()?.annotations.as_ref()?;
    annotations.get(wbc_controller::crd::CONFIG_HASH_ANNOTATION).cloned()
}

/// Polls `check` until it returns something, for at most 30 s.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status once `accept` likes it.
pub async fn status_where(
    env: &TestEnv,
    name: &str,
    what: &str,
    accept: impl Fn(&WriteBehindCacheStatus) -> bool,
) -> WriteBehindCacheStatus {
    let api = env.api::<WriteBehindCache>();
    wait_for(what, || async { api.get(name).await.unwrap().status.filter(|s| accept(s)) }).await
}

pub fn condition(status: &WriteBehindCacheStatus, type_: &str) -> (String, String, String) {
    let c = find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_} in {status:?}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The reasons of the events about one object.
pub async fn event_reasons(env: &TestEnv, name: &str) -> BTreeSet<String> {
    let events = env.api::<Event>().list(&Default::default()).await.unwrap();
    let about = |e: &&Event| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name);
    events.items.iter().filter(about).filter_map(|e| e.reason.clone()).collect()
}

pub async fn wait_for_events(env: &TestEnv, name: &str, reasons: &[&str]) -> BTreeSet<String> {
    wait_for(&format!("events {reasons:?}"), || async {
        let seen = event_reasons(env, name).await;
        reasons.iter().all(|r| seen.contains(*r)).then_some(seen)
    })
    .await
}

pub async fn edit_spec(env: &TestEnv, name: &str, spec: serde_json::Value) {
    let patch = Patch::Merge(json!({ "spec": spec }));
    env.api::<WriteBehindCache>().patch(name, &PatchParams::default(), &patch).await.unwrap();
}

/// How many events of `reason` were published about one object.
pub async fn event_count(env: &TestEnv, name: &str, reason: &str) -> i32 {
    let events = env.api::<Event>().list(&Default::default()).await.unwrap();
    let about = |e: &&Event| {
        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name) && e.reason.as_deref() == Some(reason)
    };
    events.items.iter().filter(about).map(|e| e.series.as_ref().map_or(1, |s| s.count)).sum()
}

/// The value of one series in the controller's `/metrics` text, `name{labels}` as it is printed.
pub fn metric(metrics: &Metrics, series: &str) -> Option<f64> {
    let text = String::from_utf8(metrics.render().unwrap()).unwrap();
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
