//! The target Deployments: rolled by a config-hash annotation on their pod template, and watched
//! until they run the new configuration.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::events::EventType,
};
use serde_json::json;
use tracing::info;

use crate::{
    Result,
    conditions::{Rollout, events},
    context::{Context, FIELD_MANAGER},
    crd::{CACHE_ANNOTATION, CONFIG_HASH_ANNOTATION, WriteBehindCache, label_selector},
};

/// The Deployments that `wbc`'s selector matches, by name.
pub async fn selected(wbc: &WriteBehindCache, namespace: &str, ctx: &Context) -> Result<Vec<Deployment>> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = label_selector(&wbc.target_labels());
    let mut deployments = api.list(&ListParams::default().labels(&selector)).await?.items;
    deployments.sort_by_key(|d| d.name_any());
    Ok(deployments)
}

/// Gives every Deployment `wbc` holds the configuration `hash` (and the annotation that says who holds
/// it), and says how far their rollouts are.
pub async fn roll(
    wbc: &WriteBehindCache,
    namespace: &str,
    hash: &str,
    held: Vec<Deployment>,
    ctx: &Context,
) -> Result<(Rollout, Vec<Deployment>)> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let holder = wbc.name_any();
    let mut deployments = Vec::new();
    let mut rolled = Vec::new();
    for deployment in held {
        let marked = deployment.annotations().get(CACHE_ANNOTATION) == Some(&holder);
        if config_hash(&deployment) == Some(hash) && marked {
            deployments.push(deployment);
            continue;
        }
        let name = deployment.name_any();
        let apply = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name, "namespace": namespace, "annotations": { CACHE_ANNOTATION: holder } },
            "spec": { "template": { "metadata": { "annotations": { CONFIG_HASH_ANNOTATION: hash } } } },
        });
        let patched = api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&apply)).await?;
        ctx.metrics.wrote("deployment");
        // a Deployment that only lacked the annotation (rolled by an earlier controller) is not restarted
        if config_hash(&deployment) != Some(hash) {
            info!(deployment = %name, %hash, "rollout started");
            rolled.push(name);
        }
        deployments.push(patched);
    }
    if !rolled.is_empty() {
        let note = format!("rolling {} to configuration {}", rolled.join(", "), &hash[..hash.len().min(12)]);
        ctx.publish(wbc, EventType::Normal, events::ROLLOUT_STARTED, "RollDeployments", note).await?;
    }
    Ok((rollout(&deployments, hash), deployments))
}

/// Whether a Deployment carries every one of `labels`.
pub fn is_target(deployment: &Deployment, labels: &BTreeMap<String, String>) -> bool {
    let own = deployment.labels();
    labels.iter().all(|(k, v)| own.get(k) == Some(v))
}

fn config_hash(deployment: &Deployment) -> Option<&str> {
    let template = deployment.spec.template.metadata.as_ref()?;
    template.annotations.as_ref()?.get(CONFIG_HASH_ANNOTATION).map(String::as_str)
}

/// How far the rollouts of `deployments` to configuration `hash` are.
pub fn rollout(deployments: &[Deployment], hash: &str) -> Rollout {
    if deployments.is_empty() {
        return Rollout::NoTargets;
    }
    let names = |state: State| {
        let mut names: Vec<String> =
            deployments.iter().filter(|d| state_of(d, hash) == state).map(|d| d.name_any()).collect();
        names.sort();
        names
    };
    let (pending, unavailable, total) = (names(State::Rolling), names(State::Unavailable), deployments.len());
    if !pending.is_empty() {
        Rollout::Pending { pending, total }
    } else if !unavailable.is_empty() {
        Rollout::Unavailable { unavailable, total }
    } else {
        Rollout::Complete { total }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Rolling,
    Unavailable,
    Done,
}

/// Rolled out as `kubectl rollout status` sees it: the Deployment controller has seen the current
/// template and every replica is updated; then it is done when every replica is also available.
/// Without a Deployment controller (an API server alone) it stays rolling.
fn state_of(deployment: &Deployment, hash: &str) -> State {
    let Some(status) = &deployment.status else { return State::Rolling };
    let replicas = deployment.spec.replicas.unwrap_or(1);
    let updated = config_hash(deployment) == Some(hash)
        && status.observed_generation >= deployment.metadata.generation
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas;
    match (updated, status.available_replicas.unwrap_or(0) == replicas) {
        (false, _) => State::Rolling,
        (true, false) => State::Unavailable,
        (true, true) => State::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(name: &str, hash: &str, generation: i64, status: Option<DeploymentStatus>) -> Deployment {
        let mut d = Deployment {
            spec: DeploymentSpec { replicas: Some(2), ..Default::default() },
            status,
            ..Default::default()
        };
        d.metadata.name = Some(name.into());
        d.metadata.generation = Some(generation);
        let template = d.spec.template.metadata.get_or_insert_default();
        template.annotations = Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash.to_owned())]));
        d
    }

    fn done(generation: i64) -> Option<DeploymentStatus> {
        Some(DeploymentStatus {
            observed_generation: Some(generation),
            replicas: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ..Default::default()
        })
    }

    #[test]
    fn a_rollout_completes_when_every_deployment_has_observed_and_replaced_its_pods() {
        assert_eq!(rollout(&[], "h"), Rollout::NoTargets);
        let fresh = [deployment("worker", "h", 2, None), deployment("api", "h", 2, done(1))];
        assert_eq!(rollout(&fresh, "h"), Rollout::Pending { pending: vec!["api".into(), "worker".into()], total: 2 });
        let half = [deployment("worker", "h", 2, done(2)), deployment("api", "h", 2, done(1))];
        assert_eq!(rollout(&half, "h"), Rollout::Pending { pending: vec!["api".into()], total: 2 });
        let all = [deployment("worker", "h", 2, done(2)), deployment("api", "h", 2, done(2))];
        assert_eq!(rollout(&all, "h"), Rollout::Complete { total: 2 });
        let mut blip = done(2);
        blip.as_mut().unwrap().available_replicas = Some(1);
        let one_down = [deployment("worker", "h", 2, done(2)), deployment("api", "h", 2, blip)];
        assert_eq!(rollout(&one_down, "h"), Rollout::Unavailable { unavailable: vec!["api".into()], total: 2 });
        assert_eq!(rollout(&all, "other"), Rollout::Pending { pending: vec!["api".into(), "worker".into()], total: 2 });
    }

    #[test]
    fn a_target_carries_every_selected_label() {
        let mut d = deployment("api", "h", 1, None);
        d.metadata.labels = Some(BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]));
        assert!(is_target(&d, &BTreeMap::from([("a".into(), "1".into())])));
        assert!(!is_target(&d, &BTreeMap::from([("a".into(), "1".into()), ("c".into(), "3".into())])));
        assert_eq!(label_selector(&BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])), "a=1,b=2");
    }
}
