//! Where the stores are and how to reach them: each URL with its credentials, and the TLS files
//! read and checked once at start, so that a wrong path or a stray key fails there, by name.
use std::path::Path;

use redis::{ClientTlsConfig, TlsCertificates};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::{Error, Result, secret, secret::Secret};

/// How to reach Redis: a URL (`redis://` or `rediss://`, with an ACL user and password if any)
/// and, for `rediss://`, the CA to trust and the client certificate to present. A cluster client
/// takes the same certificates (`ClusterClientBuilder::certs`).
#[derive(Clone)]
pub struct RedisEndpoint {
    url: Secret,
    certificates: Option<TlsCertificates>,
}

impl RedisEndpoint {
    /// A URL as it is; `rediss://` then trusts the system's CAs.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: Secret::new(url), certificates: None }
    }

    /// The URL with its credentials.
    pub fn url(&self) -> &Secret {
        &self.url
    }

    /// The CA and client certificate of a `rediss://` URL, if any were given.
    pub fn certificates(&self) -> Option<&TlsCertificates> {
        self.certificates.as_ref()
    }

    /// The URL without its password, for errors and logs.
    pub fn redacted(&self) -> String {
        redact(self.url.expose())
    }

    /// A client for this endpoint (not yet connected).
    pub fn client(&self) -> Result<redis::Client> {
        Ok(match &self.certificates {
            Some(certificates) => redis::Client::build_with_tls(self.url.expose(), certificates.clone())?,
            None => redis::Client::open(self.url.expose())?,
        })
    }
}

/// A file and the name of the setting that gave it, to name in errors.
pub type FileSetting<'a> = (&'static str, &'a Path);

/// The files of a TLS client: a CA to trust and a certificate with its key to present.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsFiles<'a> {
    /// The CA file.
    pub ca: Option<FileSetting<'a>>,
    /// The client certificate file.
    pub cert: Option<FileSetting<'a>>,
    /// The client key file.
    pub key: Option<FileSetting<'a>>,
}

impl TlsFiles<'_> {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The first setting given, to name in an error about all of them.
    fn first(&self) -> &'static str {
        self.ca.or(self.cert).or(self.key).map(|(name, _)| name).unwrap_or_default()
    }

    /// The certificate and key, both or neither: one alone cannot authenticate.
    fn client_pair(&self) -> Result<Option<(FileSetting<'_>, FileSetting<'_>)>> {
        match (self.cert, self.key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some((given, _)), None) | (None, Some((given, _))) => Err(Error::Config {
                setting: given,
                field: None,
                reason: "a client certificate needs both its file and its key's".into(),
            }),
        }
    }
}

/// The Redis endpoint of a URL, with `password` put into it and the TLS files read.
pub fn redis(
    url: (&'static str, &str),
    password: Option<(&'static str, &Secret)>,
    tls: TlsFiles,
) -> Result<RedisEndpoint> {
    let url = with_password(url, password)?;
    if tls.any() && !url.expose().starts_with("rediss://") {
        return Err(Error::Config {
            setting: tls.first(),
            field: None,
            reason: "TLS files need a rediss:// URL".into(),
        });
    }
    let root_cert = tls.ca.map(|(name, path)| certificates(name, path)).transpose()?;
    let client_tls = match tls.client_pair()? {
        Some(((cert_name, cert), (key_name, key))) => Some(ClientTlsConfig {
            client_cert: certificates(cert_name, cert)?,
            client_key: private_key(key_name, key)?,
        }),
        None => None,
    };
    let certificates = tls.any().then_some(TlsCertificates { client_tls, root_cert });
    Ok(RedisEndpoint { url, certificates })
}

/// PostgreSQL's `sslmode`, as libpq spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain text, TLS if the server insists; no certificate is checked.
    Allow,
    /// TLS if the server offers it, else plain text; no certificate is checked.
    Prefer,
    /// Only TLS; the certificate is checked against a CA file if one is given (as `verify-ca`).
    Require,
    /// Only TLS, with a certificate signed by a trusted CA.
    VerifyCa,
    /// Only TLS, with a certificate signed by a trusted CA and issued for the host connected to.
    VerifyFull,
}

impl From<SslMode> for PgSslMode {
    fn from(mode: SslMode) -> Self {
        match mode {
            SslMode::Disable => Self::Disable,
            SslMode::Allow => Self::Allow,
            SslMode::Prefer => Self::Prefer,
            SslMode::Require => Self::Require,
            SslMode::VerifyCa => Self::VerifyCa,
            SslMode::VerifyFull => Self::VerifyFull,
        }
    }
}

/// PostgreSQL's connect options from a URL, with `password` put into it, `sslmode` (from the URL,
/// or `mode`, which must agree with it) and the TLS files checked. A CA file with `require` checks
/// the server's certificate as `verify-ca` does, as libpq does; with a mode that never checks one,
/// it is refused rather than ignored.
pub fn database(
    url: (&'static str, &str),
    password: Option<(&'static str, &Secret)>,
    mode: Option<(&'static str, SslMode)>,
    tls: TlsFiles,
) -> Result<PgConnectOptions> {
    let full_url = with_password(url, password)?;
    let mut options: PgConnectOptions = full_url.expose().parse().map_err(|e: sqlx::Error| Error::Config {
        setting: url.0,
        field: None,
        reason: e.to_string(),
    })?;
    if let Some((name, mode)) = mode {
        if let Some(in_url) = sslmode_in(full_url.expose()).filter(|m| *m != mode) {
            let reason = format!("{mode:?} contradicts sslmode {in_url:?} in {}", url.0);
            return Err(Error::Config { setting: name, field: None, reason });
        }
        options = options.ssl_mode(mode.into());
    }
    let checks = matches!(options.get_ssl_mode(), PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull);
    if tls.any() && !checks {
        let reason = "needs sslmode require, verify-ca or verify-full (in the URL or DATABASE_SSLMODE)";
        return Err(Error::Config { setting: tls.first(), field: None, reason: reason.into() });
    }
    if let Some((name, path)) = tls.ca {
        certificates(name, path)?;
        options = options.ssl_root_cert(path);
        if matches!(options.get_ssl_mode(), PgSslMode::Require) {
            options = options.ssl_mode(PgSslMode::VerifyCa);
        }
    }
    if let Some(((cert_name, cert), (key_name, key))) = tls.client_pair()? {
        certificates(cert_name, cert)?;
        private_key(key_name, key)?;
        // Paths, not contents: each new connection reads them, so a renewed certificate is used.
        options = options.ssl_client_cert(cert).ssl_client_key(key);
    }
    Ok(options)
}

/// The `sslmode` a URL's query sets, if any and if valid (sqlx refuses an invalid one itself).
fn sslmode_in(url: &str) -> Option<SslMode> {
    let url = url::Url::parse(url).ok()?;
    let (_, mode) = url.query_pairs().find(|(k, _)| k == "sslmode" || k == "ssl-mode")?;
    clap::ValueEnum::from_str(&mode, true).ok()
}

/// What a password keeps unescaped in a URL: RFC 3986's unreserved characters.
const USERINFO: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The URL of the setting `url.0` with the password of the setting `password.0` put into it,
/// percent-encoded, so that any character works. A URL that holds another password already is
/// refused: which one is meant would be a guess.
fn with_password(url: (&'static str, &str), password: Option<(&'static str, &Secret)>) -> Result<Secret> {
    let (url_name, raw) = url;
    let Some((name, password)) = password else { return Ok(Secret::new(raw)) };
    let mut parsed =
        url::Url::parse(raw).map_err(|e| Error::Config { setting: url_name, field: None, reason: e.to_string() })?;
    let current = parsed.password().map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned());
    if current.as_deref().is_some_and(|p| p != password.expose()) {
        return Err(Error::Config {
            setting: name,
            field: None,
            reason: format!("{url_name} holds another password; give only one"),
        });
    }
    // The url crate leaves `%` as it is (it takes it for an escape already made): encode it all here.
    let encoded = percent_encoding::utf8_percent_encode(password.expose(), USERINFO).to_string();
    parsed.set_password(Some(&encoded)).map_err(|()| Error::Config {
        setting: name,
        field: None,
        reason: format!("{url_name} has no host to log in to"),
    })?;
    Ok(Secret::new(String::from(parsed)))
}

fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.into()
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// Reads a PEM file of certificates, refusing one that holds none.
fn certificates(name: &'static str, path: &Path) -> Result<Vec<u8>> {
    let pem = secret::read_file(name, path)?;
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match parsed {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(Error::Config {
            setting: name,
            field: None,
            reason: format!("{} holds no PEM certificate", path.display()),
        }),
        Err(e) => Err(Error::Config { setting: name, field: None, reason: format!("{}: {e}", path.display()) }),
    }
}

/// Reads a PEM private key file, refusing one without a key.
fn private_key(name: &'static str, path: &Path) -> Result<Vec<u8>> {
    let pem = secret::read_file(name, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| Error::Config {
        setting: name,
        field: None,
        reason: format!("{} holds no PEM private key ({e})", path.display()),
    })?;
    Ok(pem)
}
