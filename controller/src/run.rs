//! The controller's process: its arguments, its watches, its endpoints and its shutdown.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller,
        controller::Error as ControllerError,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tracing::{info, warn};
use wbc_core::telemetry::LogArgs;

use crate::{
    Metrics, Readiness,
    context::{Context, FIELD_MANAGER},
    crd::{MANAGED_BY_LABEL, WriteBehindCache},
    metrics,
    reconcile::{error_policy, reconcile},
    targets,
};

/// Command line and environment of `wbc-controller`.
#[derive(clap::Parser, Debug)]
#[command(name = "wbc-controller", version, about = "Kubernetes controller of wbc WriteBehindCache resources")]
pub struct Args {
    /// Namespace to watch; empty watches every namespace.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Name of this controller's pod, as the reporting instance of its events; empty uses the controller's name.
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod_name: String,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Args {
    /// Runs the controller until SIGTERM or Ctrl-C, then finishes the reconciles in flight.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self { watch_namespace, metrics_addr, pod_name, log } = self;
        let _telemetry = log.init("wbc-controller")?;
        let client = Client::try_default().await?;
        let metrics = Metrics::new()?;
        let readiness = Readiness::default();
        let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
        info!(%metrics_addr, "serving /healthz, /readyz and /metrics");
        let server = axum::serve(listener, metrics::router(metrics.clone(), readiness.clone()))
            .with_graceful_shutdown(wbc_core::telemetry::shutdown_signal());
        let scope = Scope {
            namespace: Some(watch_namespace).filter(|n| !n.is_empty()),
            instance: Some(pod_name).filter(|n| !n.is_empty()),
        };
        let controller = run(client, scope, metrics, readiness, wbc_core::telemetry::shutdown_signal());
        let (served, ()) = tokio::join!(server, controller);
        served?;
        info!("stopped");
        Ok(())
    }
}

/// How long a shutdown waits for the reconciles in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What one controller looks after.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// The namespace it watches, or every namespace.
    pub namespace: Option<String>,
    /// The reporting instance of its events (its pod's name).
    pub instance: Option<String>,
}

impl Scope {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
}

/// Watches `WriteBehindCache`s, their ConfigMaps and the Deployments they target, and reconciles them
/// until `shutdown` resolves; reconciles in flight then finish before it returns.
pub async fn run(
    client: Client,
    scope: Scope,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context::new(client.clone(), metrics, scope.instance.clone()));
    let caches: Api<WriteBehindCache> = scope.api(&client);
    let controller = Controller::new(caches, watcher::Config::default().any_semantic());
    let store = controller.store();
    tokio::spawn(mark_ready_once_listed(store.clone(), readiness));
    let deployments: Api<Deployment> = scope.api(&client);
    let config_maps: Api<ConfigMap> = scope.api(&client);
    let own_config_maps = format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}");
    info!(namespace = scope.namespace.as_deref().unwrap_or("*"), "controller started");
    let shutdown = shutdown.shared();
    let reconciling = controller
        .owns(config_maps, watcher::Config::default().any_semantic().labels(&own_config_maps))
        .watches(deployments, watcher::Config::default().any_semantic(), move |deployment| {
            caches_targeting(&store, &deployment)
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                // error_policy has logged and counted it
                Ok(_) | Err(ControllerError::ReconcilerFailed(..)) => {}
                Err(error) => warn!(%error, "reconcile not run"),
            }
        });
    // kube-runtime waits for its first list before it can wind down, which never comes if the API
    // server is unreachable: bound the drain
    let deadline = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running after the grace period; stopping anyway");
    };
    tokio::select! {
        () = reconciling => {}
        () = deadline => {}
    }
    info!("controller stopped");
}

/// The store's readiness wakes only its latest waiter (the controller's), so this asks again and again.
async fn mark_ready_once_listed(store: Store<WriteBehindCache>, readiness: Readiness) {
    loop {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(Ok(())) => return readiness.set_ready(),
            Ok(Err(_)) => return,
            Err(_) => continue,
        }
    }
}

/// The caches in the Deployment's namespace whose target selector matches it.
fn caches_targeting(store: &Store<WriteBehindCache>, deployment: &Deployment) -> Vec<ObjectRef<WriteBehindCache>> {
    store
        .state()
        .into_iter()
        .filter(|wbc| wbc.namespace() == deployment.namespace() && targets::is_target(deployment, &wbc.target_labels()))
        .map(|wbc| ObjectRef::from_obj(&*wbc))
        .collect()
}
