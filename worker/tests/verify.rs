//! The `wbc-verify` binary on real PostgreSQL and Redis: it judges the same whether it connects or
//! reads the files the Kubernetes suite dumps, and its exit status says which verdict it reached.
use std::{path::Path, process::Output, time::Duration};

use redis::AsyncCommands;
use serde_json::{Value, json};
use wbc_core::{
    DeadLetter, PgPool,
    store::keys,
    testkit::{
        PgServer, RedisServer,
        ledger::{Entry, Fields},
    },
};

/// PostgreSQL holding one live row and one tombstone, and Redis one dead letter.
async fn servers() -> (PgServer, RedisServer, PgPool) {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let pool = wbc_core::db::connect(&pg.url(), 2, Duration::from_secs(30)).await.expect("postgres");
    wbc_core::db::migrate(&pool).await.expect("migrations");
    sqlx::query(
        "INSERT INTO products (id, name, price, quantity, version, deleted) VALUES
         ('live', 'widget', 9.99, 3, 2, false), ('gone', '', 0, 0, 4, true)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let letter = DeadLetter {
        id: "poison".into(),
        version: 5,
        deleted: true,
        value: None,
        error: "23514: violates check constraint".into(),
        attempts: 3,
        failed_at_ms: 1,
    };
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = conn.lpush(keys::DEAD_LETTERS, serde_json::to_string(&letter).unwrap()).await.unwrap();
    (pg, redis, pool)
}

/// A ledger every write of which the servers account for.
fn accounted_writes() -> Vec<Entry> {
    let acked = |id: &str, version, fields| Entry::Acked { id: id.into(), version, fields };
    vec![
        acked("live", 1, Some(Fields::new("old", "1.00".parse().unwrap(), 1))),
        acked("live", 2, Some(Fields::new("widget", "9.99".parse().unwrap(), 3))),
        acked("gone", 4, None),
        acked("poison", 5, None),
        Entry::Unsure { id: "live".into(), fields: None, reason: "timeout".into() },
    ]
}

fn ledger_lines(entries: impl IntoIterator<Item = Entry>) -> Vec<String> {
    entries.into_iter().map(|e| serde_json::to_string(&e).unwrap()).collect()
}

fn write_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    std::fs::write(path, lines.into_iter().map(|l| l + "\n").collect::<String>()).unwrap();
}

/// Runs `wbc-verify` with `args`; returns its exit status, its stderr and its stdout.
fn run_text(args: &[&str]) -> (i32, String, String) {
    let Output { status, stdout, stderr } =
        std::process::Command::new(env!("CARGO_BIN_EXE_wbc-verify")).args(args).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (status.code().expect("exited"), text(stderr), text(stdout))
}

/// Runs `wbc-verify` with `args`; returns its exit status, its JSON verdict and its stderr.
fn run(args: &[&str]) -> (i32, Value, String) {
    let (status, stderr, stdout) = run_text(args);
    (status, serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}

/// What the Kubernetes suite dumps: the rows through `row_to_json`, and the dead-letter listing.
async fn dump(pool: &PgPool, redis_url: &str, dir: &Path) {
    let (status, _, query) = run_text(&["--rows-query"]);
    assert_eq!(status, 0);
    let rows: Vec<(String,)> =
        sqlx::query_as(&format!("SELECT j::text FROM ({}) AS t(j)", query.trim())).fetch_all(pool).await.unwrap();
    write_lines(&dir.join("rows.jsonl"), rows.into_iter().map(|(r,)| r));
    let store = wbc_core::Store::connect(&wbc_core::endpoint::RedisEndpoint::new(redis_url)).await.unwrap();
    let letters: Vec<DeadLetter> = store.dead_letters(None).await.unwrap().into_iter().map(|(_, l)| l).collect();
    let listing = json!({"count": letters.len(), "dead_letters": letters});
    std::fs::write(dir.join("dlq.json"), listing.to_string()).unwrap();
}

#[tokio::test]
async fn wbc_verify_reaches_the_same_verdict_connected_and_from_dumped_files() {
    let (pg, redis, pool) = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let (ledger, rows, dlq) =
        (dir.path().join("ledger.jsonl"), dir.path().join("rows.jsonl"), dir.path().join("dlq.json"));
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    dump(&pool, &redis.url(), dir.path()).await;
    let (pg_url, redis_url) = (pg.url(), redis.url());
    let connected = ["--ledger", &path(&ledger), "--database-url", &pg_url, "--redis-url", &redis_url];
    let from_files = ["--ledger", &path(&ledger), "--rows", &path(&rows), "--dead-letters", &path(&dlq)];

    write_lines(&ledger, ledger_lines(accounted_writes()));
    let (status, verdict, stderr) = run(&connected);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(
        (verdict["holds"].clone(), verdict["ok"].clone(), verdict["dead_lettered"].clone()),
        (json!(true), json!(2), json!(1))
    );
    assert_eq!(run(&from_files).1, verdict, "the files judge as the connections do");

    let lost = Entry::Acked {
        id: "never-flushed".into(),
        version: 7,
        fields: Some(Fields::new("n", "1.00".parse().unwrap(), 1)),
    };
    write_lines(&ledger, ledger_lines(accounted_writes().into_iter().chain([lost])));
    let (status, verdict, stderr) = run(&connected);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(verdict["lost"].as_array().map(Vec::len), Some(1), "{verdict}");
    assert!(stderr.contains("lost 1 (e.g. never-flushed: acked v7"), "{stderr}");
    assert_eq!(run(&from_files).1, verdict, "the files judge as the connections do");
}

#[tokio::test]
async fn wbc_verify_that_cannot_read_its_evidence_exits_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    let (status, verdict, stderr) = run(&["--ledger", missing.to_str().unwrap(), "--rows", "x", "--dead-letters", "y"]);
    assert_eq!((status, verdict), (2, Value::Null));
    assert!(stderr.contains(&format!("cannot judge: {}: No such file", missing.display())), "{stderr}");
    let (status, _, stderr) = run(&["--ledger", missing.to_str().unwrap(), "--dead-letters", "y"]);
    assert_eq!(status, 2, "without rows nor a database it is a usage error: {stderr}");
}
