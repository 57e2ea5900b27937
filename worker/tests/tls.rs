//! The whole path over TLS: a write through the API and its flush by a worker process reach Redis
//! and PostgreSQL encrypted, with a private CA, client certificates, an ACL user, and credentials
//! read from files as a mounted Secret gives them.
mod common;

use std::time::Duration;

use common::{Stack, WorkerProc, product, wait_until};
use wbc_core::{
    Store, StoreArgs,
    endpoint::SslMode,
    testkit::{Certificates, PgAuth, PgServer, RedisServer},
};

/// The variables a deployment sets for `store`, as the chart does: no credential in the environment.
fn environment(store: &StoreArgs) -> Vec<(&'static str, String)> {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().unwrap().display().to_string();
    vec![
        ("REDIS_URL", store.redis_url.clone().unwrap()),
        ("REDIS_PASSWORD_FILE", path(&store.redis_password_file)),
        ("REDIS_CA_FILE", path(&store.redis_ca_file)),
        ("REDIS_CLIENT_CERT_FILE", path(&store.redis_client_cert_file)),
        ("REDIS_CLIENT_KEY_FILE", path(&store.redis_client_key_file)),
        ("DATABASE_URL", store.database_url.clone().unwrap()),
        ("DATABASE_SSLMODE", "verify-full".into()),
        ("DATABASE_CA_FILE", path(&store.database_ca_file)),
        ("DATABASE_CLIENT_CERT_FILE", path(&store.database_client_cert_file)),
        ("DATABASE_CLIENT_KEY_FILE", path(&store.database_client_key_file)),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_and_its_flush_reach_both_stores_over_tls_with_credentials_from_files() {
    let certs = Certificates::make();
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("redis-password");
    std::fs::write(&password, "s3cret: pw@/#\n").unwrap();
    let acl_user = ["--user", "wbc", "on", ">s3cret: pw@/#", "~*", "&*", "+@all", "--user", "default", "off"];
    let redis = RedisServer::start_tls(&certs, &[&["--tls-auth-clients", "yes"][..], &acl_user].concat());
    let pg = PgServer::start_tls(&certs, PgAuth::ClientCert);
    let store = StoreArgs {
        redis_url: Some(redis.url().replace("rediss://", "rediss://wbc@")),
        redis_password_file: Some(password),
        redis_ca_file: Some(certs.ca()),
        redis_client_cert_file: Some(certs.client_cert()),
        redis_client_key_file: Some(certs.client_key()),
        database_sslmode: Some(SslMode::VerifyFull),
        database_ca_file: Some(certs.ca()),
        database_client_cert_file: Some(certs.client_cert()),
        database_client_key_file: Some(certs.client_key()),
        ..StoreArgs::new(redis.url(), pg.url())
    };
    let stack = Stack::start_with_stores(redis, pg, store.clone(), &[("flush-interval", "100ms")]).await;
    let env = environment(&store);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _worker = WorkerProc::spawn(&stack, "tls", &env);

    let (status, _) = stack.put("tls-1", product("over TLS", 3)).await;
    assert!(status == 200 || status == 201, "write answered {status}");
    let flushed = wait_until(Duration::from_secs(60), || async { stack.rows().await.remove("tls-1") }).await;
    assert_eq!(flushed.map(|(_, name, quantity, _)| (name, quantity)), Some(("over TLS".into(), 3)));

    // PostgreSQL takes TCP clients over TLS only (hostssl); pg_stat_ssl shows it, and the client
    // certificate, for the API's connections and the worker's.
    let sessions: Vec<(bool, Option<String>)> = sqlx::query_as(
        "SELECT s.ssl, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.backend_type = 'client backend' AND a.client_addr IS NOT NULL",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert!(sessions.len() >= 2, "the API and the worker hold connections: {sessions:?}");
    assert!(sessions.iter().all(|(ssl, dn)| *ssl && dn.as_deref() == Some("/CN=wbc")), "{sessions:?}");

    // Redis has no plain-text port, so every client (the API, the worker) came in over TLS, as wbc.
    let mut redis = Store::connect(&store.redis().unwrap()).await.unwrap().connection();
    let port: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("port").query_async(&mut redis).await.unwrap();
    assert_eq!(port[1], "0");
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut redis).await.unwrap();
    assert!(clients.lines().count() >= 3, "the API, the worker and this test: {clients}");
    assert!(clients.lines().all(|c| c.contains(" user=wbc ")), "{clients}");
}
