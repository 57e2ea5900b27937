//! Shared core of wbc: the settings model, configuration, products, the Redis queue and PostgreSQL persistence.
pub mod config;
pub mod db;
pub mod endpoint;
mod error;
pub mod failpoint;
pub mod fallback;
pub mod ops;
pub mod price;
pub mod product;
pub mod secret;
pub mod settings;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::StoreArgs;
pub use error::{Error, Result};
pub use price::Price;
pub use product::{ProductInput, Record};
pub use settings::{FailureKind, OverflowPolicy, Pipeline, PipelineArgs, RedisDownPolicy, Settings, WriteMode};
pub use sqlx::PgPool;
pub use store::{DeadLetter, QueueStats, Store};

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
