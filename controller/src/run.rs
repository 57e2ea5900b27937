//! The controller's process: its arguments, its watches, its endpoints and its shutdown.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{
        Controller, WatchStreamExt,
        controller::Error as ControllerError,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tracing::{debug, info, warn};
use wbc_core::telemetry::LogArgs;

use crate::{
    Metrics, Readiness,
    context::{Context, FIELD_MANAGER},
    crd::{MANAGED_BY_LABEL, WriteBehindCache},
    metrics,
    reconcile::{error_policy, reconcile},
    targets, uninstall, watch,
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
    /// The controller's own Deployment, `namespace/name`, which no WriteBehindCache may roll; empty: none.
    #[arg(long, env = "OWN_DEPLOYMENT", default_value = "")]
    pub own_deployment: String,
    #[command(flatten)]
    pub log: LogArgs,
    /// A one-off task instead of the controller.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The one-off tasks of `wbc-controller`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Deletes a WriteBehindCache and waits until it is gone (the chart's pre-delete hook).
    DeleteCache {
        /// Its namespace.
        #[arg(long)]
        namespace: String,
        /// Its name.
        #[arg(long)]
        name: String,
    },
}

impl Args {
    /// Runs the controller until SIGTERM or Ctrl-C, then finishes the reconciles in flight.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self { watch_namespace, metrics_addr, pod_name, own_deployment, log, command } = self;
        let _telemetry = log.init("wbc-controller")?;
        let client = Client::try_default().await?;
        if let Some(Command::DeleteCache { namespace, name }) = command {
            return Ok(uninstall::delete_cache(client, &namespace, &name).await?);
        }
        let metrics = Metrics::new()?;
        let readiness = Readiness::default();
        let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
        info!(%metrics_addr, "serving /healthz, /readyz and /metrics");
        let server = axum::serve(listener, metrics::router(metrics.clone(), readiness.clone()))
            .with_graceful_shutdown(wbc_core::telemetry::shutdown_signal());
        let scope = Scope {
            namespace: Some(watch_namespace).filter(|n| !n.is_empty()),
            instance: Some(pod_name).filter(|n| !n.is_empty()),
            own_deployment: Some(own_deployment).filter(|n| !n.is_empty()),
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
    /// Its own Deployment, `namespace/name`, which no cache may roll.
    pub own_deployment: Option<String>,
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

    /// The API of `K` in scope, for objects decoded one by one.
    fn dynamic_api<K: kube::Resource<DynamicType = ()>>(&self, client: &Client) -> Api<DynamicObject> {
        let resource = ApiResource::erase::<K>(&());
        match &self.namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
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
    let (store, writer) = reflector::store();
    let ctx = Context::new(client.clone(), metrics.clone(), scope.instance.clone());
    let ctx = Arc::new(ctx.watching(store.clone(), scope.own_deployment.clone()));
    tokio::spawn(mark_ready_once_listed(store.clone(), readiness.clone()));
    let watched = readiness.clone();
    let caches = watch::caches(scope.dynamic_api::<WriteBehindCache>(&client), ctx.clone())
        .inspect_ok(move |_| watched.progressed())
        .reflect(writer)
        .applied_objects();
    let deployments: Api<Deployment> = scope.api(&client);
    let config_maps: Api<ConfigMap> = scope.api(&client);
    let own_config_maps = format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}");
    info!(namespace = scope.namespace.as_deref().unwrap_or("*"), "controller started");
    let shutdown = shutdown.shared();
    let targeting = store.clone();
    let reconciling = Controller::for_stream(caches, store)
        .owns(config_maps, watcher::Config::default().any_semantic().labels(&own_config_maps))
        .watches(deployments, watcher::Config::default().any_semantic(), move |deployment| {
            caches_targeting(&targeting, &deployment)
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            match result {
                Ok(_) => readiness.progressed(),
                // error_policy has logged and counted it
                Err(ControllerError::ReconcilerFailed(..)) => {}
                Err(ControllerError::QueueError(error)) => {
                    warn!(%error, "a watch failed; it is retried");
                    metrics.watch_failed();
                    readiness.failed();
                }
                // a cache deleted (or undecodable) since its reconcile was queued
                Err(ControllerError::ObjectNotFound(object)) => debug!(%object, "no longer there"),
                Err(error) => warn!(%error, "reconcile not run"),
            }
            std::future::ready(())
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
