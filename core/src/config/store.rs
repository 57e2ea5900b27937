//! The settings of the connections to Redis and PostgreSQL, and their resolution into endpoints at
//! start: each credential from its variable or from a file (`X_FILE`, a mounted Secret), the TLS
//! files read and checked, every refusal naming its variable.
use std::path::PathBuf;

use clap::Args;
use sqlx::postgres::PgConnectOptions;

use crate::{
    Result,
    endpoint::{self, RedisEndpoint, SslMode, TlsFiles},
    secret::{self, Secret},
};

/// REDIS_URL when neither it nor REDIS_URL_FILE is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// DATABASE_URL when neither it nor DATABASE_URL_FILE is set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://wbc@127.0.0.1:5432/wbc";
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Connections to Redis and PostgreSQL. Every credential may come from a file instead
/// (`REDIS_PASSWORD_FILE`, …), so that a Secret is mounted rather than put in the environment.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Redis holding the cache and the write queue: redis://, or rediss:// for TLS, with an ACL user
    /// and password if any (rediss://user:password@host:6380). Default: redis://127.0.0.1:6379.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// A file holding REDIS_URL, for a URL that carries a password.
    #[arg(long, env = "REDIS_URL_FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// Password put into REDIS_URL (percent-encoded, so any character works).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<Secret>,
    /// A file holding REDIS_PASSWORD, such as a mounted Secret.
    #[arg(long, env = "REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed Redis's certificate, for rediss://; only it is then trusted.
    /// Without it, the system's CAs.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a Redis that asks for one (tls-auth-clients), with REDIS_CLIENT_KEY_FILE.
    #[arg(long, env = "REDIS_CLIENT_CERT_FILE")]
    pub redis_client_cert_file: Option<PathBuf>,
    /// Private key (PEM) of REDIS_CLIENT_CERT_FILE.
    #[arg(long, env = "REDIS_CLIENT_KEY_FILE")]
    pub redis_client_key_file: Option<PathBuf>,
    /// PostgreSQL, the system of record: postgres://user@host:5432/db, with ?sslmode=verify-full
    /// for TLS. Default: postgres://wbc@127.0.0.1:5432/wbc.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// A file holding DATABASE_URL, for a URL that carries a password.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Password put into DATABASE_URL (percent-encoded, so any character works).
    #[arg(long, env = "DATABASE_PASSWORD", hide_env_values = true)]
    pub database_password: Option<Secret>,
    /// A file holding DATABASE_PASSWORD, such as a mounted Secret.
    #[arg(long, env = "DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
    /// TLS to PostgreSQL, as libpq's sslmode (the URL's sslmode, if any, must agree): require
    /// encrypts, verify-ca also checks the CA, verify-full also the host name. Default: prefer.
    #[arg(long, env = "DATABASE_SSLMODE", value_enum)]
    pub database_sslmode: Option<SslMode>,
    /// CA certificate (PEM) that signed PostgreSQL's certificate, trusted besides the system's CAs;
    /// sslmode require then checks it as verify-ca does.
    #[arg(long, env = "DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for PostgreSQL (pg_hba.conf `cert`, or clientcert=verify-full),
    /// with DATABASE_CLIENT_KEY_FILE; read again by each new connection, so a renewal is picked up.
    #[arg(long, env = "DATABASE_CLIENT_CERT_FILE")]
    pub database_client_cert_file: Option<PathBuf>,
    /// Private key (PEM) of DATABASE_CLIENT_CERT_FILE.
    #[arg(long, env = "DATABASE_CLIENT_KEY_FILE")]
    pub database_client_key_file: Option<PathBuf>,
    /// Largest number of PostgreSQL connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
}

impl StoreArgs {
    /// The settings of two plain URLs, everything else at its default (tests and tools).
    pub fn new(redis_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        Self {
            redis_url: Some(redis_url.into()),
            redis_url_file: None,
            redis_password: None,
            redis_password_file: None,
            redis_ca_file: None,
            redis_client_cert_file: None,
            redis_client_key_file: None,
            database_url: Some(database_url.into()),
            database_url_file: None,
            database_password: None,
            database_password_file: None,
            database_sslmode: None,
            database_ca_file: None,
            database_client_cert_file: None,
            database_client_key_file: None,
            database_max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// How to reach Redis: the URL with its password put in, and the TLS files read and checked.
    pub fn redis(&self) -> Result<RedisEndpoint> {
        let url = secret::resolve("REDIS_URL", self.redis_url.as_deref(), self.redis_url_file.as_deref())?;
        let url = url.unwrap_or_else(|| Secret::new(DEFAULT_REDIS_URL));
        let password = secret::resolve(
            "REDIS_PASSWORD",
            self.redis_password.as_ref().map(Secret::expose),
            self.redis_password_file.as_deref(),
        )?;
        let tls = TlsFiles {
            ca: self.redis_ca_file.as_deref().map(|p| ("REDIS_CA_FILE", p)),
            cert: self.redis_client_cert_file.as_deref().map(|p| ("REDIS_CLIENT_CERT_FILE", p)),
            key: self.redis_client_key_file.as_deref().map(|p| ("REDIS_CLIENT_KEY_FILE", p)),
        };
        endpoint::redis(("REDIS_URL", url.expose()), password.as_ref().map(|p| ("REDIS_PASSWORD", p)), tls)
    }

    /// How to reach PostgreSQL: the URL with its password put in, its sslmode, and the TLS files
    /// checked.
    pub fn database(&self) -> Result<PgConnectOptions> {
        let url = secret::resolve("DATABASE_URL", self.database_url.as_deref(), self.database_url_file.as_deref())?;
        let url = url.unwrap_or_else(|| Secret::new(DEFAULT_DATABASE_URL));
        let password = secret::resolve(
            "DATABASE_PASSWORD",
            self.database_password.as_ref().map(Secret::expose),
            self.database_password_file.as_deref(),
        )?;
        let tls = TlsFiles {
            ca: self.database_ca_file.as_deref().map(|p| ("DATABASE_CA_FILE", p)),
            cert: self.database_client_cert_file.as_deref().map(|p| ("DATABASE_CLIENT_CERT_FILE", p)),
            key: self.database_client_key_file.as_deref().map(|p| ("DATABASE_CLIENT_KEY_FILE", p)),
        };
        endpoint::database(
            ("DATABASE_URL", url.expose()),
            password.as_ref().map(|p| ("DATABASE_PASSWORD", p)),
            self.database_sslmode.map(|m| ("DATABASE_SSLMODE", m)),
            tls,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        store: StoreArgs,
    }

    fn parse(args: &[&str]) -> StoreArgs {
        Cli::try_parse_from(std::iter::once("wbc").chain(args.iter().copied())).unwrap().store
    }

    const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

    fn write(dir: &Path, name: &str, content: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    fn refusal(result: Result<impl Sized>) -> String {
        result.err().map(|e| e.to_string()).expect("refused")
    }

    #[test]
    fn new_has_the_defaults_of_the_command_line() {
        let (cli, new) = (parse(&["--redis-url", "r", "--database-url", "d"]), StoreArgs::new("r", "d"));
        assert_eq!(cli.database_max_connections, new.database_max_connections);
    }

    #[test]
    fn without_urls_the_local_defaults_are_used() {
        let store = parse(&[]);
        assert_eq!(store.redis().unwrap().url().expose(), DEFAULT_REDIS_URL);
        assert_eq!(store.database().unwrap().get_host(), "127.0.0.1");
    }

    #[test]
    fn a_password_file_goes_into_the_url_percent_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "password", "p@ss:w/rd %+?#\n");
        let store = parse(&["--redis-url", "rediss://alice@cache:6380/0", "--redis-password-file", &file]);
        let redis = store.redis().unwrap();
        assert_eq!(redis.url().expose(), "rediss://alice:p%40ss%3Aw%2Frd%20%25%2B%3F%23@cache:6380/0");
        assert_eq!(redis.redacted(), "rediss://alice:***@cache:6380/0");
        let info = redis::IntoConnectionInfo::into_connection_info(redis.url().expose()).unwrap();
        assert_eq!(info.redis_settings().password(), Some("p@ss:w/rd %+?#"));
        let store = parse(&["--database-url", "postgres://wbc@db/wbc", "--database-password-file", &file]);
        assert_eq!(store.database().unwrap().get_username(), "wbc");
    }

    #[test]
    fn an_unusable_database_url_is_refused_by_name() {
        let err = refusal(parse(&["--database-url", "postgres://a:notaport/b"]).database());
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_url_and_its_file_together_are_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "url", "redis://other:6379");
        let err = refusal(parse(&["--redis-url", "redis://a:6379", "--redis-url-file", &file]).redis());
        assert!(err.contains("REDIS_URL and REDIS_URL_FILE"), "{err}");
    }

    #[test]
    fn a_password_that_contradicts_the_urls_own_is_refused() {
        let err = refusal(parse(&["--redis-url", "redis://:one@a:6379", "--redis-password", "two"]).redis());
        assert!(err.contains("REDIS_PASSWORD") && err.contains("REDIS_URL holds another password"), "{err}");
        let same = parse(&["--redis-url", "redis://:one@a:6379", "--redis-password", "one"]).redis().unwrap();
        assert_eq!(same.url().expose(), "redis://:one@a:6379");
    }

    #[test]
    fn missing_or_malformed_tls_files_are_refused_by_their_variable() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = write(dir.path(), "ca.txt", "not a certificate\n");
        let cases: [(&[&str], &str); 4] = [
            (&["--redis-url", "rediss://a:6380", "--redis-ca-file", "/nonexistent/ca.pem"], "REDIS_CA_FILE"),
            (&["--redis-url", "rediss://a:6380", "--redis-ca-file", &not_pem], "REDIS_CA_FILE"),
            (
                &["--database-url", "postgres://a/b?sslmode=verify-full", "--database-ca-file", "/nonexistent"],
                "DATABASE_CA_FILE",
            ),
            (
                &["--database-sslmode", "require", "--database-client-key-file", "/nonexistent"],
                "DATABASE_CLIENT_KEY_FILE",
            ),
        ];
        for (args, name) in cases {
            let store = parse(args);
            let err = if name.starts_with("REDIS") { refusal(store.redis()) } else { refusal(store.database()) };
            assert!(err.contains(name), "{args:?}: {err}");
        }
    }

    #[test]
    fn tls_files_without_tls_are_refused_rather_than_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.pem", PEM_CERT);
        let err = refusal(parse(&["--redis-url", "redis://a:6379", "--redis-ca-file", &ca]).redis());
        assert!(err.contains("REDIS_CA_FILE") && err.contains("rediss://"), "{err}");
        // prefer, the default, checks no certificate
        let err = refusal(parse(&["--database-ca-file", &ca]).database());
        assert!(err.contains("DATABASE_CA_FILE") && err.contains("sslmode"), "{err}");
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = write(dir.path(), "client.pem", PEM_CERT);
        let err = refusal(parse(&["--redis-url", "rediss://a:6380", "--redis-client-cert-file", &cert]).redis());
        assert!(err.contains("REDIS_CLIENT_CERT_FILE"), "{err}");
        let args = ["--database-sslmode", "verify-full", "--database-client-cert-file", &cert];
        assert!(refusal(parse(&args).database()).contains("DATABASE_CLIENT_CERT_FILE"));
    }

    #[test]
    fn complete_tls_files_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) =
            (write(dir.path(), "ca", PEM_CERT), write(dir.path(), "crt", PEM_CERT), write(dir.path(), "key", PEM_KEY));
        let redis = parse(&[
            "--redis-url",
            "rediss://a:6380",
            "--redis-ca-file",
            &ca,
            "--redis-client-cert-file",
            &cert,
            "--redis-client-key-file",
            &key,
        ])
        .redis()
        .unwrap();
        let certificates = redis.certificates().expect("certificates");
        assert!(certificates.root_cert.is_some() && certificates.client_tls.is_some());
        let database = parse(&[
            "--database-url",
            "postgres://a/b?sslmode=require",
            "--database-ca-file",
            &ca,
            "--database-client-cert-file",
            &cert,
            "--database-client-key-file",
            &key,
        ])
        .database()
        .unwrap();
        // as libpq: require with a CA file checks the certificate
        assert_eq!(format!("{:?}", database.get_ssl_mode()), "VerifyCa");
    }

    #[test]
    fn an_sslmode_setting_that_contradicts_the_url_is_refused() {
        let err = refusal(
            parse(&["--database-url", "postgres://a/b?sslmode=disable", "--database-sslmode", "verify-full"])
                .database(),
        );
        assert!(err.contains("DATABASE_SSLMODE") && err.contains("DATABASE_URL"), "{err}");
        let agreeing =
            parse(&["--database-url", "postgres://a/b?sslmode=verify-full", "--database-sslmode", "verify-full"]);
        assert_eq!(format!("{:?}", agreeing.database().unwrap().get_ssl_mode()), "VerifyFull");
    }
}
