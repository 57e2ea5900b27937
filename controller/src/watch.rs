//! The watch of the caches. Each object is decoded on its own, so that one the controller cannot read
//! (stored under an older, looser schema, say) is skipped with a Warning event, a log line and a metric,
//! instead of failing the list of every cache in scope. A deleted cache whose ConfigMap stays for the
//! Deployments that read it is announced on that ConfigMap.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{WatchStreamExt, events::EventType, watcher},
};
use tracing::warn;

use crate::{Result, context::Context, crd::WriteBehindCache};

/// Event reason of a cache the controller cannot decode.
pub const UNDECODABLE: &str = "Undecodable";
/// Event reason on a ConfigMap that outlives its deleted cache.
pub const CONFIG_KEPT: &str = "ConfigKept";

/// The cache watch of `api` (a dynamic API of WriteBehindCaches), decoded object by object.
pub fn caches(
    api: Api<DynamicObject>,
    ctx: Arc<Context>,
) -> impl Stream<Item = Result<watcher::Event<WriteBehindCache>, watcher::Error>> + Send {
    let reported: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    watcher(api, watcher::Config::default().any_semantic()).default_backoff().try_filter_map(move |event| {
        let (ctx, reported) = (ctx.clone(), reported.clone());
        async move { Ok(decode(event, &ctx, &reported).await) }
    })
}

/// The event with its object decoded. One that does not decode is reported, then left out of a list,
/// and dropped from the store when it changes (so no stale version of it is reconciled).
async fn decode(
    event: watcher::Event<DynamicObject>,
    ctx: &Context,
    reported: &Mutex<HashSet<(String, String)>>,
) -> Option<watcher::Event<WriteBehindCache>> {
    use watcher::Event::*;
    match event {
        Init => Some(Init),
        InitDone => Some(InitDone),
        InitApply(object) => match parse(&object) {
            Ok(wbc) => Some(InitApply(wbc)),
            Err(error) => {
                report(&object, &error, ctx, reported).await;
                None
            }
        },
        Apply(object) => match parse(&object) {
            Ok(wbc) => Some(Apply(wbc)),
            Err(error) => {
                report(&object, &error, ctx, reported).await;
                Some(Delete(metadata_only(object)))
            }
        },
        Delete(object) => {
            let wbc = parse(&object).unwrap_or_else(|_| metadata_only(object));
            if let Err(error) = announce_kept_config(&wbc, ctx).await {
                warn!(name = %wbc.name_any(), %error, "could not announce the ConfigMap a deleted cache leaves");
            }
            Some(Delete(wbc))
        }
    }
}

fn parse(object: &DynamicObject) -> Result<WriteBehindCache, String> {
    object.clone().try_parse::<WriteBehindCache>().map_err(|e| e.to_string())
}

/// A cache with only the metadata of `object`: enough for the store to drop it.
fn metadata_only(object: DynamicObject) -> WriteBehindCache {
    WriteBehindCache { metadata: object.metadata, spec: Default::default(), status: None }
}

/// Logs, counts and announces (once per version of the object) a cache that does not decode.
async fn report(object: &DynamicObject, error: &str, ctx: &Context, reported: &Mutex<HashSet<(String, String)>>) {
    let version = (object.uid().unwrap_or_default(), object.resource_version().unwrap_or_default());
    if !reported.lock().expect("not poisoned").insert(version) {
        return;
    }
    let (namespace, name) = (object.namespace().unwrap_or_default(), object.name_any());
    warn!(%namespace, %name, %error, "skipping a WriteBehindCache that does not decode");
    ctx.metrics.undecodable();
    let regarding = object.object_ref(&ApiResource::erase::<WriteBehindCache>(&()));
    let note = format!(
        "the controller cannot read this WriteBehindCache ({error}) and leaves it alone; its ConfigMap and \
         Deployments keep their last configuration until the spec is applied again under the current schema"
    );
    if let Err(error) = ctx.publish_about(&regarding, EventType::Warning, UNDECODABLE, "Decode", note).await {
        warn!(%namespace, %name, %error, "could not publish the event");
    }
}

/// Says on the ConfigMap of a deleted cache that it stays while Deployments read it.
async fn announce_kept_config(wbc: &WriteBehindCache, ctx: &Context) -> Result<()> {
    let Some(namespace) = wbc.namespace() else { return Ok(()) };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(config_map) = api.get_opt(&wbc.config_map_name()).await? else { return Ok(()) };
    let readers: Vec<String> =
        config_map.owner_references().iter().filter(|o| o.kind == "Deployment").map(|o| o.name.clone()).collect();
    if readers.is_empty() {
        return Ok(());
    }
    let note = format!(
        "WriteBehindCache {} was deleted; Deployments {} keep reading this configuration, and the ConfigMap is \
         deleted with the last of them",
        wbc.name_any(),
        readers.join(", ")
    );
    ctx.publish_about(&config_map.object_ref(&()), EventType::Normal, CONFIG_KEPT, "Release", note).await
}
