//! Shared core of wbc: configuration, products, the Redis queue and PostgreSQL persistence.
pub mod config;
pub mod db;
pub mod endpoint;
mod error;
pub mod failpoint;
pub mod fallback;
pub mod ops;
pub mod product;
pub mod secret;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{FailureKind, OverflowPolicy, Pipeline, PipelineArgs, RedisDownPolicy, StoreArgs, WriteMode};
pub use error::{Error, Result};
pub use product::{ProductInput, Record};
pub use sqlx::PgPool;
pub use store::{DeadLetter, QueueStats, Store};

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
