//! Which cache holds a Deployment that several select. Two caches rolling one Deployment would undo
//! each other's configuration on every reconcile, so exactly one holds it: the cache its
//! `wbc.dev/cache` annotation names, while that cache still selects it; otherwise the oldest of those
//! that select it (by creation time, then name). The others leave it alone and say so. No cache
//! holds the controller's own Deployment.
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Resource, ResourceExt};

use crate::{
    context::Context,
    crd::{CACHE_ANNOTATION, WriteBehindCache},
    targets::is_target,
};

/// Who holds a Deployment that a cache selects but may not roll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Another cache, by name.
    Cache(String),
    /// The Deployment runs the controller itself.
    Controller,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Cache(name) => write!(f, "WriteBehindCache {name}"),
            Holder::Controller => f.write_str("wbc-controller itself"),
        }
    }
}

/// A Deployment, by name, that a cache selects and leaves to its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub deployment: String,
    pub holder: Holder,
}

/// The Deployments `wbc` holds among those its selector matches, and the ones it leaves to others.
pub fn split(wbc: &WriteBehindCache, selected: Vec<Deployment>, ctx: &Context) -> (Vec<Deployment>, Vec<Conflict>) {
    let mut caches: Vec<WriteBehindCache> = ctx
        .caches
        .state()
        .iter()
        .filter(|c| c.namespace() == wbc.namespace() && c.uid() != wbc.uid())
        .map(|c| (**c).clone())
        .collect();
    // the store may not have seen this cache yet; it always competes
    caches.push(wbc.clone());
    let mut held = Vec::new();
    let mut conflicts = Vec::new();
    for deployment in selected {
        let holder = if is_own(&deployment, ctx.own_deployment.as_deref()) {
            Holder::Controller
        } else {
            Holder::Cache(holder(&deployment, &caches).unwrap_or_else(|| wbc.name_any()))
        };
        if holder == Holder::Cache(wbc.name_any()) {
            held.push(deployment);
        } else {
            conflicts.push(Conflict { deployment: deployment.name_any(), holder });
        }
    }
    (held, conflicts)
}

fn is_own(deployment: &Deployment, own: Option<&str>) -> bool {
    own.and_then(|own| own.split_once('/')).is_some_and(|(namespace, name)| {
        deployment.namespace().as_deref() == Some(namespace) && deployment.name_any() == name
    })
}

/// The name of the cache that holds `deployment` among `caches`.
fn holder(deployment: &Deployment, caches: &[WriteBehindCache]) -> Option<String> {
    let contenders: Vec<&WriteBehindCache> = caches
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
        .filter(|c| c.spec.target_selector.as_ref().is_none_or(|s| s.check().is_ok()))
        .filter(|c| is_target(deployment, &c.target_labels()))
        .collect();
    let named = deployment.annotations().get(CACHE_ANNOTATION);
    if let Some(named) = named.filter(|n| contenders.iter().any(|c| &&c.name_any() == n)) {
        return Some(named.clone());
    }
    contenders.iter().min_by_key(|c| (c.meta().creation_timestamp.clone(), c.name_any())).map(|c| c.name_any())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::crd::TargetSelector;

    fn cache(name: &str, created: i64, labels: &[(&str, &str)]) -> WriteBehindCache {
        let mut wbc = WriteBehindCache::new(name, Default::default());
        let match_labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        wbc.spec.target_selector = Some(TargetSelector { match_labels });
        wbc.meta_mut().creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
        wbc
    }

    fn shared(annotation: Option<&str>) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = Some("shared".into());
        d.metadata.labels = Some(BTreeMap::from([("app".into(), "shared".into())]));
        d.metadata.annotations = annotation.map(|a| BTreeMap::from([(CACHE_ANNOTATION.to_owned(), a.to_owned())]));
        d
    }

    #[test]
    fn the_cache_a_deployment_names_holds_it_while_it_selects_it_and_else_the_oldest_does() {
        let app = [("app", "shared")];
        let caches = [cache("b", 1, &app), cache("a", 2, &app), cache("c", 1, &[("app", "other")])];
        assert_eq!(holder(&shared(None), &caches).as_deref(), Some("b"), "the oldest");
        assert_eq!(holder(&shared(Some("a")), &caches).as_deref(), Some("a"), "the named one");
        assert_eq!(holder(&shared(Some("c")), &caches).as_deref(), Some("b"), "c no longer selects it");
        assert_eq!(holder(&shared(Some("gone")), &caches).as_deref(), Some("b"), "a deleted cache");
        let twins = [cache("y", 1, &app), cache("x", 1, &app)];
        assert_eq!(holder(&shared(None), &twins).as_deref(), Some("x"), "same age: by name");
    }

    #[test]
    fn the_controllers_own_deployment_is_named_by_namespace_and_name() {
        let mut d = shared(None);
        d.metadata.namespace = Some("ops".into());
        assert!(is_own(&d, Some("ops/shared")));
        assert!(!is_own(&d, Some("other/shared")));
        assert!(!is_own(&d, Some("ops/else")));
        assert!(!is_own(&d, None));
    }
}
