use thiserror::Error;

/// Errors of the shared write-behind core.
#[derive(Debug, Error)]
pub enum Error {
    /// Input that breaks a rule; `field` names what was wrong.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A configuration value that cannot be used: `setting` names its environment variable, `field` its
    /// place in a WriteBehindCache's spec (none for what the resource does not hold, such as RUST_LOG).
    #[error("invalid configuration {setting}: {reason}")]
    Config { setting: &'static str, field: Option<&'static str>, reason: String },
    /// The queue holds `capacity` dirty keys already.
    #[error("write queue is full ({capacity} dirty keys)")]
    QueueFull { capacity: u64 },
    /// Redis no longer remembers the last version of `id`: the write needs the one PostgreSQL holds.
    #[error("the persisted version of {id} is needed to version a write")]
    VersionUnknown { id: String },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A record in Redis that cannot be decoded.
    #[error("corrupt record for {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A failpoint fired (tests only); `permanent` when it stands for a refused row.
    #[error("failpoint {point}")]
    Failpoint { point: &'static str, permanent: bool },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
