//! The enums of the pipeline settings. Each is spelled two ways, both derived from its variants: as the
//! resource's spec writes it (serde and schemars: `WriteBehind`) and as the environment and the
//! ConfigMap write it (clap: `write-behind`).
use std::sync::LazyLock;

use clap::{ValueEnum, builder::PossibleValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a write reaches PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, JsonSchema)]
pub enum WriteMode {
    /// Acknowledge once the write is in Redis; a worker persists it later.
    WriteBehind,
    /// Write PostgreSQL before acknowledging.
    WriteThrough,
}

/// What a write does when the queue holds `queue_capacity` dirty keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, JsonSchema)]
pub enum OverflowPolicy {
    /// Refuse the write with 503 and `Retry-After`.
    Reject,
    /// Write that request through to PostgreSQL.
    WriteThrough,
}

/// What a write does when Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, JsonSchema)]
pub enum RedisDownPolicy {
    /// Refuse the write with 503.
    Reject,
    /// Write it to PostgreSQL directly.
    WriteThrough,
}

/// What a simulated database failure looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, JsonSchema)]
pub enum FailureKind {
    /// A batch fails as if the connection dropped; it is retried without limit.
    Transient,
    /// A record fails as if it broke a constraint; it ends in the dead-letter queue.
    Permanent,
}

impl WriteMode {
    /// The environment's spelling, e.g. `write-behind`, for metric labels.
    pub fn env_name(self) -> &'static str {
        // borrowed from a static, so the label needs no allocation per write
        static NAMES: LazyLock<Vec<(WriteMode, PossibleValue)>> = LazyLock::new(possible_values);
        NAMES.iter().find(|(mode, _)| *mode == self).map_or("", |(_, name)| name.get_name())
    }
}

fn possible_values<T: ValueEnum>() -> Vec<(T, PossibleValue)> {
    T::value_variants().iter().filter_map(|v| Some((v.clone(), v.to_possible_value()?))).collect()
}
