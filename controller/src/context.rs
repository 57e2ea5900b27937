//! What every reconcile shares: the client, the event publisher, the metrics and the one field manager.
//! It sits apart from the modules that use it, so that their imports run one way.
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client, Resource,
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, Store},
    },
};

use crate::{Metrics, Result, crd::WriteBehindCache};

/// The one field manager of every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "wbc-controller";

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes API.
    pub client: Client,
    /// Who publishes the events.
    pub reporter: Reporter,
    /// The controller's own metrics.
    pub metrics: Metrics,
    /// Asks the target pods for their health.
    pub http: reqwest::Client,
    /// Every cache in scope, as the watch last saw it: which one holds a Deployment that several select.
    pub caches: Store<WriteBehindCache>,
    /// The controller's own Deployment, `namespace/name`, which no cache may roll.
    pub own_deployment: Option<String>,
}

impl Context {
    /// A context for `client`, reporting as `instance` (the controller's pod) when known. It knows of no
    /// other cache until [`Context::watching`] gives it the store of the watch.
    pub fn new(client: Client, metrics: Metrics, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.to_owned(), instance };
        let (caches, _) = reflector::store();
        Self { client, reporter, metrics, http: reqwest::Client::new(), caches, own_deployment: None }
    }

    /// The same context, seeing the caches of `caches` and keeping its hands off `own_deployment`.
    pub fn watching(self, caches: Store<WriteBehindCache>, own_deployment: Option<String>) -> Self {
        Self { caches, own_deployment, ..self }
    }

    /// Publishes an event about `wbc`.
    pub async fn publish(
        &self,
        wbc: &WriteBehindCache,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<()> {
        self.publish_about(&wbc.object_ref(&()), type_, reason, action, note).await
    }

    /// Publishes an event about any object.
    pub async fn publish_about(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<()> {
        let event =
            Event { type_, reason: reason.to_owned(), note: Some(note), action: action.to_owned(), secondary: None };
        // events are published on transitions only, so each is its own: a shared Recorder would fold one
        // into an earlier event of the same reason (its series keeps the earlier note)
        Recorder::new(self.client.clone(), self.reporter.clone()).publish(&event, regarding).await?;
        self.metrics.wrote("event");
        Ok(())
    }
}
