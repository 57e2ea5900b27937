//! TLS for the test servers: certificates made with `openssl`, Redis on a TLS port only, and
//! PostgreSQL that takes TCP clients over TLS only (`hostssl`).
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use tempfile::TempDir;

use super::{PgServer, RedisServer, give_to, pg_user};

/// The extensions of each kind of certificate; a server's is for 127.0.0.1 only, so that a
/// connection to `localhost` shows a certificate issued for another name.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
";

/// Certificates for TLS tests, made with `openssl` in a temporary directory: a CA; a server
/// certificate for 127.0.0.1 (SAN IP:127.0.0.1) and a client certificate for the user `wbc`, both
/// signed by it; and a second CA that signed neither.
pub struct Certificates {
    dir: TempDir,
}

impl Certificates {
    /// Makes them (P-256 keys, which take milliseconds).
    pub fn make() -> Self {
        let dir = tempfile::Builder::new().prefix("wbc-tls-").tempdir().expect("tempdir");
        let certs = Self { dir };
        std::fs::write(certs.path("openssl.cnf"), OPENSSL_CONFIG).expect("openssl.cnf");
        certs.authority("ca", "wbc-test-ca");
        certs.authority("other-ca", "wbc-other-ca");
        certs.signed("server", "127.0.0.1", "server");
        certs.signed("client", "wbc", "client");
        // PostgreSQL reads its key as its own user and wants it private; the directory is ours (root).
        std::fs::set_permissions(certs.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        give_to(&certs.server_key(), pg_user().as_ref());
        certs
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A CA that signed neither.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.crt")
    }

    /// The servers' certificate, for 127.0.0.1.
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.crt")
    }

    /// The servers' private key.
    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    /// The client certificate, for the user `wbc` (its common name).
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.crt")
    }

    /// The client's private key.
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }

    fn authority(&self, name: &str, common_name: &str) {
        let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
        self.openssl(
            &["req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", "-days", "2"],
            &key,
            &cert,
            common_name,
        );
    }

    fn signed(&self, name: &str, common_name: &str, extensions: &str) {
        let (key, csr, cert) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
        self.openssl(&["req", "-new", "-config", "openssl.cnf"], &key, &csr, common_name);
        self.run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            extensions,
            "-out",
            &cert,
        ]);
    }

    /// `openssl req` with a new P-256 key, unencrypted.
    fn openssl(&self, args: &[&str], key: &str, out: &str, common_name: &str) {
        let subject = format!("/CN={common_name}");
        let mut all = args.to_vec();
        all.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]);
        all.extend(["-out", out, "-subj", &subject]);
        self.run(&all);
        std::fs::set_permissions(self.path(key), std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(self.dir.path()).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl RedisServer {
    /// Redis listening with TLS only (`--port 0`), its certificate from `certs`, clients' certificates
    /// checked against `certs.ca()` when they present one; `args` adds more, e.g.
    /// `--tls-auth-clients yes` or `--requirepass`.
    pub fn start_tls(certs: &Certificates, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("wbc-redis-").tempdir().expect("tempdir");
        let path = |p: PathBuf| p.display().to_string();
        let mut all = vec!["--save".into(), String::new(), "--appendonly".into(), "no".into()];
        all.extend(["--tls-cert-file".into(), path(certs.server_cert()), "--tls-key-file".into()]);
        all.extend([path(certs.server_key()), "--tls-ca-cert-file".into(), path(certs.ca())]);
        all.extend(["--tls-auth-clients".into(), "optional".into()]);
        all.extend(args.iter().map(|a| a.to_string()));
        let mut server = Self { child: None, dir, port: super::free_port(), args: all, tls: true };
        server.spawn();
        server
    }
}

/// How a TLS PostgreSQL authenticates clients on TCP, all of which must use TLS.
pub enum PgAuth {
    /// No check (`trust`), as the plain servers.
    Trust,
    /// The user `wbc` with this password (`scram-sha-256`).
    Password(String),
    /// A client certificate whose common name is the user (`cert`).
    ClientCert,
}

impl PgServer {
    /// PostgreSQL with `ssl = on` and the certificates of `certs`; TCP clients must use TLS
    /// (`hostssl` only) and authenticate as `auth` says. The local socket stays `trust`.
    pub fn start_tls(certs: &Certificates, auth: PgAuth) -> Self {
        let mut server = Self::create();
        let method = match &auth {
            PgAuth::Trust => "trust",
            PgAuth::Password(_) => "scram-sha-256",
            PgAuth::ClientCert => "cert",
        };
        let hba =
            format!("local all all trust\nhostssl all all 127.0.0.1/32 {method}\nhostssl all all ::1/128 {method}\n");
        std::fs::write(server.dir.path().join("data/pg_hba.conf"), hba).expect("pg_hba.conf");
        let setting = |name: &str, path: PathBuf| ["-c".to_owned(), format!("{name}={}", path.display())];
        server.args = ["-c".to_owned(), "ssl=on".to_owned()].into_iter().collect();
        server.args.extend(setting("ssl_cert_file", certs.server_cert()));
        server.args.extend(setting("ssl_key_file", certs.server_key()));
        server.args.extend(setting("ssl_ca_file", certs.ca()));
        server.spawn();
        if let PgAuth::Password(password) = auth {
            server.psql(&format!("ALTER ROLE wbc PASSWORD '{}'", password.replace('\'', "''")));
        }
        server
    }

    /// Runs one statement as `wbc` on the local socket.
    fn psql(&self, sql: &str) {
        let socket: &Path = self.dir.path();
        let out = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "wbc", "-d", "postgres", "-p", &self.port.to_string()])
            .arg("-h")
            .arg(socket)
            .args(["-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
