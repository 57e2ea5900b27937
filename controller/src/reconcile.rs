//! One reconcile: render the spec, apply the ConfigMap, roll the targets, report the status. Each
//! step reads first and writes only what differs, so a reconcile of an unchanged resource writes nothing.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::ConfigMap},
    apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use tracing::{debug, error, info, instrument, warn};

use crate::{
    Error, Result, claims,
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
    // a reconcile queued before the cache was deleted (or replaced by one of the same name) has nothing
    // to do: its deletion is no failure, and a new cache gets a reconcile of its own
    let Some(previous) = live_status(&wbc, &namespace, &ctx).await? else {
        info!("the cache is gone; nothing to reconcile");
        return Ok(Action::await_change());
    };
    let (observed, health) = observe(&wbc, &namespace, &ctx).await?;
    update_status(&wbc, &namespace, previous, &observed, health.as_ref(), &ctx).await?;
    Ok(Action::requeue(RESYNC))
}

/// The status of the live cache, or `None` when the cache is no longer the one of `wbc`.
async fn live_status(wbc: &WriteBehindCache, namespace: &str, ctx: &Context) -> Result<Option<WriteBehindCacheStatus>> {
    let api: Api<WriteBehindCache> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_status(&wbc.name_any()).await {
        Ok(live) if live.uid() == wbc.uid() => Ok(Some(live.status.unwrap_or_default())),
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Renders the spec, applies the ConfigMap, rolls the Deployments the cache holds and asks their pods
/// about the stores (best effort: `None` for an invalid spec).
async fn observe(wbc: &WriteBehindCache, namespace: &str, ctx: &Context) -> Result<(Observed, Option<Health>)> {
    let rendered = match render(wbc) {
        Ok(rendered) => rendered,
        Err(message) => {
            warn!(%message, "invalid spec; the last valid configuration stays in place");
            return Ok((Observed::Invalid { message }, None));
        }
    };
    let (held, conflicts) = claims::split(wbc, targets::selected(wbc, namespace, ctx).await?, ctx);
    // the Warning event and the Degraded condition say it once; the log says it at debug level each time
    for conflict in &conflicts {
        debug!(deployment = %conflict.deployment, holder = %conflict.holder, "selected Deployment left to its holder");
    }
    apply_config_map(wbc, namespace, &rendered, &held, ctx).await?;
    let (rollout, deployments) = targets::roll(wbc, namespace, &rendered.hash, held, ctx).await?;
    let health = health::probe(&deployments, namespace, ctx).await;
    let observed = Observed::Applied { hash: rendered.hash, rollout, outages: health.outages.clone(), conflicts };
    Ok((observed, Some(health)))
}

/// Counts the failure and tries again shortly.
pub fn error_policy(wbc: Arc<WriteBehindCache>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(namespace = wbc.namespace(), name = %wbc.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed(error);
    Action::requeue(RETRY_AFTER_FAILURE)
}

/// The ConfigMap as the controller wants it: owned by the cache, which controls it, and by every
/// Deployment that reads it, so that the garbage collector deletes it only once all of them are gone and
/// a deleted cache leaves its Deployments their last configuration.
fn desired_config_map(wbc: &WriteBehindCache, rendered: &Rendered, held: &[Deployment]) -> Result<ConfigMap> {
    let owner = wbc.controller_owner_ref(&()).ok_or_else(|| Error::IncompleteMetadata(wbc.name_any()))?;
    let mut owners = vec![owner];
    for deployment in held {
        owners.push(deployment.owner_ref(&()).ok_or_else(|| Error::IncompleteMetadata(deployment.name_any()))?);
    }
    Ok(ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(wbc.config_map_name()),
            namespace: wbc.namespace(),
            owner_references: Some(owners),
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

/// Whether `live` already carries everything of `want`. Others may add labels and data keys of their
/// own, which the controller neither compares nor removes; the data keys it applied must be exactly
/// the wanted ones, with the wanted values.
fn config_map_matches(live: &ConfigMap, want: &ConfigMap) -> bool {
    let contains = |live: &Option<BTreeMap<String, String>>, want: &Option<BTreeMap<String, String>>| {
        let live = live.clone().unwrap_or_default();
        want.iter().flatten().all(|(k, v)| live.get(k) == Some(v))
    };
    let owners = |c: &ConfigMap| -> BTreeSet<(String, bool)> {
        let ours = |o: &&OwnerReference| o.kind == "Deployment" || o.kind == WriteBehindCache::kind(&());
        let refs = c.metadata.owner_references.iter().flatten().filter(ours);
        refs.map(|o| (o.uid.clone(), o.controller == Some(true))).collect()
    };
    let wanted_keys: BTreeSet<&str> = want.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
    applied_data_keys(live).iter().map(String::as_str).collect::<BTreeSet<_>>() == wanted_keys
        && contains(&live.data, &want.data)
        && owners(live) == owners(want)
        && contains(&live.metadata.labels, &want.metadata.labels)
        && contains(&live.metadata.annotations, &want.metadata.annotations)
}

/// The data keys the controller's last apply set, from the ConfigMap's managed fields.
fn applied_data_keys(live: &ConfigMap) -> BTreeSet<String> {
    let ours = |m: &&ManagedFieldsEntry| {
        m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
    };
    let applied = live.metadata.managed_fields.iter().flatten().find(ours);
    let fields = applied.and_then(|m| m.fields_v1.as_ref()).and_then(|f| f.0.get("f:data")?.as_object().cloned());
    fields.into_iter().flatten().filter_map(|(key, _)| key.strip_prefix("f:").map(str::to_owned)).collect()
}

async fn apply_config_map(
    wbc: &WriteBehindCache,
    namespace: &str,
    rendered: &Rendered,
    held: &[Deployment],
    ctx: &Context,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let want = desired_config_map(wbc, rendered, held)?;
    let name = wbc.config_map_name();
    let live = api.get_opt(&name).await?;
    if live.as_ref().is_some_and(|live| config_map_matches(live, &want)) {
        return Ok(());
    }
    let data_changed = live.as_ref().is_none_or(|live| {
        let live = live.data.clone().unwrap_or_default();
        rendered.data.iter().any(|(k, v)| live.get(k) != Some(v))
    });
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

/// Writes the status when it differs from `previous`, the live one (the status of the cached object may
/// lag behind the controller's own last write); an invalid spec is announced when it appears, a loss of
/// Redis data when it is reported.
async fn update_status(
    wbc: &WriteBehindCache,
    namespace: &str,
    previous: WriteBehindCacheStatus,
    observed: &Observed,
    health: Option<&Health>,
    ctx: &Context,
) -> Result<()> {
    let api: Api<WriteBehindCache> = Api::namespaced(ctx.client.clone(), namespace);
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
