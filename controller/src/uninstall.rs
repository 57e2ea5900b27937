//! `wbc-controller delete-cache`: the chart's pre-delete hook. On a first install the chart's
//! WriteBehindCache is a post-install hook (the CRD is not served yet when Helm maps the release), and
//! Helm never deletes hooks, so `helm uninstall` would leave the cache behind without this.
use std::time::Duration;

use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject},
};
use tracing::info;

use crate::{Result, crd::WriteBehindCache};

/// How long the command waits for the cache to be gone (nothing holds its deletion back, so this is quick).
const GONE_WITHIN: Duration = Duration::from_secs(60);

/// Deletes the cache `name` in `namespace` (a missing one is fine) and waits until it is gone.
pub async fn delete_cache(client: Client, namespace: &str, name: &str) -> Result<()> {
    // dynamic: a cache that no longer decodes is deleted all the same
    let resource = ApiResource::erase::<WriteBehindCache>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => info!(%namespace, %name, "WriteBehindCache deleted"),
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            info!(%namespace, %name, "no such WriteBehindCache; nothing to delete");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    }
    let deadline = tokio::time::Instant::now() + GONE_WITHIN;
    while api.get_opt(name).await?.is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
