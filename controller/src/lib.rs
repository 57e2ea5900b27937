//! The wbc Kubernetes controller: a `WriteBehindCache` resource becomes the ConfigMap that the API and
//! worker read their environment from, and the Deployments that read it are rolled when it changes.
pub mod claims;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod data_loss;
mod error;
pub mod health;
pub mod manifests;
pub mod metrics;
pub mod reconcile;
pub mod render;
mod run;
pub mod targets;
mod uninstall;
pub mod watch;

pub use crd::{WriteBehindCache, WriteBehindCacheSpec, WriteBehindCacheStatus};
pub use error::{Error, Result};
pub use metrics::{Metrics, Readiness};
pub use run::{Args, Command, Scope, run};
