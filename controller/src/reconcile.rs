//! One reconcile: render the spec, apply the ConfigMap, roll the targets, report the status. Each
//! step reads first and writes only what differs, so a reconcile of an unchanged resource writes nothing.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{api::core::v1::ConfigMap, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use tracing::{error, info, instrument, warn};

use crate::{
    Error, Result,
    conditions::{self, Observed, events},
    context::{Context, FIELD_MANAGER},
    crd::{
        CONFIG_HASH_ANNOTATION, INSTANCE_LABEL, MANAGED_BY_LABEL, PART_OF_LABEL, WriteBehindCache,
        WriteBehindCacheStatus,
    },
    data_loss,
    health::{self, Health},
    render::{Rendered, render},
    targets,
};

/// How often an unchanged resource is reconciled anyway: its pods are asked whether the stores are
/// reachable, and a missed watch event is made up for.
pub const RESYNC: Duration = Duration::from_secs(10);
/// How long after a failed reconcile it is tried again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Brings the ConfigMap, the target Deployments and the status in line with one `WriteBehindCache`.
#[instrument(skip_all, fields(namespace = wbc.namespace(), name = %wbc.name_any(), generation = wbc.meta().generation))]
pub async fn reconcile(wbc: Arc<WriteBehindCache>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let namespace = wbc.namespace().ok_or_else(|| Error::IncompleteMetadata(wbc.name_any()))?;
    let (observed, health) = match render(&wbc) {
        Err(message) => {
            warn!(%message, "invalid spec; the last valid configuration stays in place");
            (Observed::Invalid { message }, None)
        }
        Ok(rendered) => {
            apply_config_map(&wbc, &namespace, &rendered, &ctx).await?;
            let (rollout, deployments) = targets::roll(&wbc, &namespace, &rendered.hash, &ctx).await?;
            let health = health::probe(&deployments, &namespace, &ctx).await;
            (Observed::Applied { hash: rendered.hash, rollout, outages: health.outages.clone() }, Some(health))
        }
    };
    update_status(&wbc, &namespace, &observed, health.as_ref(), &ctx).await?;
    Ok(Action::requeue(RESYNC))
}

/// Counts the failure and tries again shortly.
pub fn error_policy(wbc: Arc<WriteBehindCache>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(namespace = wbc.namespace(), name = %wbc.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed(error);
    Action::requeue(RETRY_AFTER_FAILURE)
}

/// The ConfigMap as the controller wants it.
fn desired_config_map(wbc: &WriteBehindCache, rendered: &Rendered) -> Result<ConfigMap> {
    let owner = wbc.controller_owner_ref(&()).ok_or_else(|| Error::IncompleteMetadata(wbc.name_any()))?;
    Ok(ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(wbc.config_map_name()),
            namespace: wbc.namespace(),
            owner_references: Some(vec![owner]),
            labels: Some(BTreeMap::from([
                (PART_OF_LABEL.to_owned(), "wbc".to_owned()),
                (INSTANCE_LABEL.to_owned(), wbc.name_any()),
                (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
            ])),
            annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), rendered.hash.clone())])),
            ..Default::default()
        },
        data: Some(rendered.data.clone()),
        ..Default::default()
    })
}

/// Whether `live` already carries everything of `want` (others may add labels of their own).
fn config_map_matches(live: &ConfigMap, want: &ConfigMap) -> bool {
    let contains = |live: &Option<BTreeMap<String, String>>, want: &Option<BTreeMap<String, String>>| {
        let live = live.clone().unwrap_or_default();
        want.iter().flatten().all(|(k, v)| live.get(k) == Some(v))
    };
    let owned =
        want.metadata.owner_references.iter().flatten().all(|o| {
            live.metadata.owner_references.iter().flatten().any(|l| l.uid == o.uid && l.controller == Some(true))
        });
    live.data == want.data
        && owned
        && contains(&live.metadata.labels, &want.metadata.labels)
        && contains(&live.metadata.annotations, &want.metadata.annotations)
}

async fn apply_config_map(wbc: &WriteBehindCache, namespace: &str, rendered: &Rendered, ctx: &Context) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let want = desired_config_map(wbc, rendered)?;
    let name = wbc.config_map_name();
    let live = api.get_opt(&name).await?;
    if live.as_ref().is_some_and(|live| config_map_matches(live, &want)) {
        return Ok(());
    }
    let data_changed = live.as_ref().is_none_or(|live| live.data != want.data);
    let mut apply = serde_json::to_value(&want)?;
    apply["apiVersion"] = json!("v1");
    apply["kind"] = json!("ConfigMap");
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&apply)).await?;
    ctx.metrics.wrote("configmap");
    info!(config_map = %name, hash = %rendered.hash, "configuration applied");
    if data_changed {
        let short = &rendered.hash[..12];
        let note = format!("ConfigMap {name} holds configuration {short}");
        ctx.publish(wbc, EventType::Normal, events::CONFIG_APPLIED, "ApplyConfig", note).await?;
    }
    Ok(())
}

/// Writes the status when it differs from the live one; an invalid spec is announced when it appears,
/// a loss of Redis data when it is reported.
async fn update_status(
    wbc: &WriteBehindCache,
    namespace: &str,
    observed: &Observed,
    health: Option<&Health>,
    ctx: &Context,
) -> Result<()> {
    let api: Api<WriteBehindCache> = Api::namespaced(ctx.client.clone(), namespace);
    // the status of the cached object may lag behind our own last write
    let previous = api.get_status(&wbc.name_any()).await?.status.unwrap_or_default();
    let mut desired = conditions::desired(observed);
    if health.is_some_and(|h| !h.complete) {
        conditions::hold_store_outage(&previous.conditions, &mut desired);
    }
    let conditions = conditions::merge(&previous.conditions, desired, Timestamp::now());
    let (config_hash, config_map) = match observed {
        Observed::Applied { hash, .. } => (Some(hash.clone()), Some(wbc.config_map_name())),
        Observed::Invalid { .. } => (previous.config_hash.clone(), previous.config_map.clone()),
    };
    let loss = data_loss::observe(previous.data_loss.as_ref(), health.and_then(|h| h.data_loss.as_ref()));
    let status = WriteBehindCacheStatus {
        observed_generation: wbc.meta().generation,
        config_hash,
        config_map,
        conditions,
        data_loss: loss.status,
    };
    if status == previous {
        return Ok(());
    }
    let apply = json!({
        "apiVersion": WriteBehindCache::api_version(&()),
        "kind": WriteBehindCache::kind(&()),
        "status": status,
    });
    api.patch_status(&wbc.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&apply)).await?;
    ctx.metrics.wrote("status");
    // announced once the status remembers it, so that a restarted controller does not announce it again
    if let Some(note) = loss.news {
        error!(%note, "data loss reported by the target pods");
        ctx.publish(wbc, EventType::Warning, events::DATA_LOSS_DETECTED, "Reconcile", note).await?;
    }
    for t in conditions::transitions(&previous.conditions, &status.conditions) {
        let type_ = if t.warning { EventType::Warning } else { EventType::Normal };
        ctx.publish(wbc, type_, &t.reason, "Reconcile", t.note).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
