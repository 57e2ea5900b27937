use std::error::Error as StdError;

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
    /// The first connection to a store failed at start; `reason` says whether authentication, TLS
    /// or the network failed, and which settings to look at.
    #[error("cannot connect to {store} at {address}: {reason}")]
    Connect { store: &'static str, address: String, reason: String },
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

    /// Redis refused the first connection to `endpoint`.
    pub(crate) fn connect_redis(endpoint: &crate::endpoint::RedisEndpoint, e: redis::RedisError) -> Self {
        let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
        let reason = if auth {
            format!("authentication failed ({e}); check the user and password: REDIS_URL, REDIS_PASSWORD(_FILE)")
        } else {
            tls_reason(&e, "REDIS", "").unwrap_or_else(|| e.to_string())
        };
        Self::Connect { store: "Redis", address: endpoint.redacted(), reason }
    }

    /// PostgreSQL refused the first connection made with `options`.
    pub(crate) fn connect_database(options: &sqlx::postgres::PgConnectOptions, e: sqlx::Error) -> Self {
        // 28P01 invalid_password, 28000 invalid_authorization_specification (pg_hba.conf, `cert`)
        let auth = matches!(&e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("28P01" | "28000")));
        let reason = if auth {
            format!(
                "authentication failed ({e}); check the user and password (DATABASE_URL, DATABASE_PASSWORD(_FILE)) \
                 or the client certificate (DATABASE_CLIENT_CERT_FILE)"
            )
        } else {
            // sqlx 0.8.6 misses the name error of rustls 0.23.24 and later (transact-rs/sqlx#3793)
            let verify_ca = matches!(options.get_ssl_mode(), sqlx::postgres::PgSslMode::VerifyCa);
            let name_note = if verify_ca { "; verify-ca checks the name too in this build" } else { "" };
            tls_reason(&e, "DATABASE", name_note).unwrap_or_else(|| e.to_string())
        };
        let address = format!("{}:{} as {}", options.get_host(), options.get_port(), options.get_username());
        Self::Connect { store: "PostgreSQL", address, reason }
    }
}

/// The TLS failure somewhere in `e`'s chain, explained with the settings (`prefix`_CA_FILE, …)
/// that decide it, and `name_note` after a name mismatch; None when TLS is not what failed.
fn tls_reason(e: &(dyn StdError + 'static), prefix: &str, name_note: &str) -> Option<String> {
    use rustls::{AlertDescription, CertificateError};
    let tls = rustls_error(e)?;
    let hint = match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            format!("the server's certificate is not signed by a trusted CA ({prefix}_CA_FILE, or the system's)")
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the server's certificate is not issued for the host name connected to{name_note}"),
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_owned()
        }
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA,
        ) => format!("the server refused the client certificate, or needs one ({prefix}_CLIENT_CERT_FILE)"),
        _ => "the TLS handshake failed".to_owned(),
    };
    Some(format!("TLS: {hint}: {tls}"))
}

/// The rustls error in a chain. Two wrappers hide the error they hold from `source`: an `io::Error`
/// (sqlx's handshake) and an `Arc<dyn Error>` (the redis crate's sources), so each is opened.
fn rustls_error<'a>(mut e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    type Shared = std::sync::Arc<dyn StdError + Send + Sync>;
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            inner
        } else if let Some(shared) = e.downcast_ref::<Shared>() {
            &**shared
        } else {
            e.source()?
        };
    }
}

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
