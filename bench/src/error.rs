//! The one error type of the bench.
use std::path::PathBuf;

use thiserror::Error;

/// Why a benchmark run stopped.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] wbc_core::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgresql: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("http request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A file the bench needs is not there.
    #[error("{what} not found at {path}: {hint}")]
    Missing { what: &'static str, path: PathBuf, hint: &'static str },
    /// wbc-api or wbc-worker did not start, or stopped.
    #[error("{name}: {reason}")]
    Service { name: String, reason: String },
    /// redis-benchmark or pgbench failed, or printed something we cannot read.
    #[error("{tool}: {reason}")]
    Tool { tool: &'static str, reason: String },
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Scenarios failed; the report says which and why.
    #[error("{0} scenario(s) failed; see the report")]
    Failed(usize),
    /// Drawing a chart failed.
    #[error("chart {name}: {reason}")]
    Chart { name: &'static str, reason: String },
}

/// Result alias of the bench.
pub type Result<T, E = Error> = std::result::Result<T, E>;
