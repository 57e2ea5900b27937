use thiserror::Error;

/// Errors of the controller.
#[derive(Debug, Error)]
pub enum Error {
    /// A request to the Kubernetes API failed; the reconcile is retried.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object came without its namespace or uid.
    #[error("{0} lacks its namespace or uid")]
    IncompleteMetadata(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("yaml: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Every value of `metric_label`.
    pub const METRIC_LABELS: [&str; 6] =
        ["api_refused", "api_unreachable", "incomplete_metadata", "serialization", "metrics", "io"];

    /// A low-cardinality label for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api_refused",
            Error::Kube(_) => "api_unreachable",
            Error::IncompleteMetadata(_) => "incomplete_metadata",
            Error::Json(_) | Error::Yaml(_) => "serialization",
            Error::Metrics(_) => "metrics",
            Error::Io(_) => "io",
        }
    }
}

/// Result alias of the controller crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
