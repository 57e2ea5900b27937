//! Whether the stores are reachable, as the target pods see them: each running pod answers `/readyz`
//! with the state of Redis and of PostgreSQL.
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, ResourceExt, api::ListParams};
use serde::Deserialize;
use tracing::{debug, warn};
use wbc_core::db::DataLosses;

use crate::{context::Context, crd::label_selector};

/// Container ports, by name, that serve `/readyz` (the API's and the worker's).
pub const HEALTH_PORT_NAMES: [&str; 2] = ["http", "metrics"];
/// How long a pod may take to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// A store the controller's workloads depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    Redis,
    Postgres,
}

impl Dependency {
    pub fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        }
    }
}

/// A store that a pod reported unreachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    pub dependency: Dependency,
    pub pod: String,
    pub error: String,
}

/// The body of `/readyz`.
#[derive(Deserialize)]
struct Readyz {
    redis: String,
    postgres: String,
    /// Absent from pods of older versions, null while their PostgreSQL does not answer.
    #[serde(default)]
    data_loss: Option<DataLosses>,
}

/// What the target pods reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// The stores pods reported unreachable, sorted by store and pod.
    pub outages: Vec<Outage>,
    /// The record of losses of Redis data with the most losses that a pod reported, if any did.
    pub data_loss: Option<DataLosses>,
    /// False when the pods of some target could not be listed, so their word is missing.
    pub complete: bool,
}

/// Asks the running pods of `deployments`; best effort: pods that do not answer say nothing, and a
/// failed list leaves the health incomplete. Both are logged and counted, and neither fails the reconcile.
pub async fn probe(deployments: &[Deployment], namespace: &str, ctx: &Context) -> Health {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let mut probes = Vec::new();
    let mut complete = true;
    for deployment in deployments {
        let Some(labels) = deployment.spec.selector.match_labels.as_ref().filter(|l| !l.is_empty()) else { continue };
        match api.list(&ListParams::default().labels(&label_selector(labels))).await {
            Ok(pods) => probes.extend(pods.items.iter().filter_map(health_url).map(|(pod, url)| ask(ctx, pod, url))),
            Err(error) => {
                warn!(deployment = %deployment.name_any(), %error, "target pods not listed; their health is unknown");
                ctx.metrics.probe_failed("list_pods");
                complete = false;
            }
        }
    }
    let mut health = Health { complete, ..Health::default() };
    for (pod, readyz) in join_all(probes).await.into_iter().flatten() {
        health.outages.extend(reported(&pod, &readyz));
        // every pod reads the same record; one whose PostgreSQL lags or is down must not hide a loss
        health.data_loss =
            std::cmp::max_by_key(health.data_loss, readyz.data_loss, |l| l.map(|l| (l.count, l.last_detected_at_ms)));
    }
    health.outages.sort_by(|a, b| (a.dependency, &a.pod).cmp(&(b.dependency, &b.pod)));
    health
}

/// `http://<pod IP>:<port>/readyz` of a running pod that is not being deleted.
fn health_url(pod: &Pod) -> Option<(String, String)> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.as_deref().filter(|_| status.phase.as_deref() == Some("Running"))?;
    let port = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find_map(|p| p.name.as_deref().filter(|n| HEALTH_PORT_NAMES.contains(n)).map(|_| p.container_port))?;
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() };
    Some((pod.name_any(), format!("http://{host}:{port}/readyz")))
}

async fn ask(ctx: &Context, pod: String, url: String) -> Option<(String, Readyz)> {
    let answer = async { ctx.http.get(&url).timeout(PROBE_TIMEOUT).send().await?.json::<Readyz>().await };
    match answer.await {
        Ok(readyz) => Some((pod, readyz)),
        Err(error) => {
            debug!(%pod, %error, "no health report");
            ctx.metrics.probe_failed("ask_pod");
            None
        }
    }
}

fn reported(pod: &str, readyz: &Readyz) -> Vec<Outage> {
    [(Dependency::Redis, &readyz.redis), (Dependency::Postgres, &readyz.postgres)]
        .into_iter()
        .filter(|(_, state)| state.as_str() != "ok")
        .map(|(dependency, error)| Outage { dependency, pod: pod.to_owned(), error: error.clone() })
        .collect()
}

/// One line per unreachable store: the first pod's error and how many other pods agree.
pub fn describe(outages: &[Outage]) -> String {
    let mut lines = Vec::new();
    for dependency in [Dependency::Redis, Dependency::Postgres] {
        let seen: Vec<&Outage> = outages.iter().filter(|o| o.dependency == dependency).collect();
        if let Some(first) = seen.first() {
            let others = match seen.len() - 1 {
                0 => String::new(),
                1 => " and 1 other pod".to_owned(),
                n => format!(" and {n} other pods"),
            };
            lines.push(format!("{} unreachable from {}{others}: {}", dependency.name(), first.pod, first.error));
        }
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodStatus};

    fn pod(name: &str, phase: &str, ip: Option<&str>, port: (&str, i32)) -> Pod {
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    ports: Some(vec![ContainerPort {
                        name: Some(port.0.into()),
                        container_port: port.1,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus { phase: Some(phase.into()), pod_ip: ip.map(Into::into), ..Default::default() }),
            ..Default::default()
        };
        pod.metadata.name = Some(name.into());
        pod
    }

    #[test]
    fn only_running_pods_with_a_named_health_port_are_probed() {
        let url = health_url(&pod("api-1", "Running", Some("10.88.0.5"), ("http", 8000)));
        assert_eq!(url, Some(("api-1".into(), "http://10.88.0.5:8000/readyz".into())));
        assert!(health_url(&pod("api-2", "Pending", Some("10.88.0.6"), ("http", 8000))).is_none());
        assert!(health_url(&pod("api-3", "Running", None, ("http", 8000))).is_none());
        assert!(health_url(&pod("db-0", "Running", Some("10.88.0.7"), ("postgresql", 5432))).is_none());
        let v6 = health_url(&pod("w-1", "Running", Some("fd00::5"), ("metrics", 8001))).unwrap();
        assert_eq!(v6.1, "http://[fd00::5]:8001/readyz");
    }

    #[test]
    fn outages_are_named_per_store_with_the_first_pod_and_a_count() {
        let readyz =
            |redis: &str, postgres: &str| Readyz { redis: redis.into(), postgres: postgres.into(), data_loss: None };
        let down = readyz("connection refused", "ok");
        let mut all = reported("api-a", &down);
        all.extend(reported("worker-b", &down));
        all.extend(reported("api-c", &readyz("timed out", "pool timed out")));
        assert!(reported("api-d", &readyz("ok", "ok")).is_empty());
        all.sort_by(|a, b| (a.dependency, &a.pod).cmp(&(b.dependency, &b.pod)));
        assert_eq!(
            describe(&all),
            "redis unreachable from api-a and 2 other pods: connection refused; \
             postgres unreachable from api-c: pool timed out"
        );
    }
}
