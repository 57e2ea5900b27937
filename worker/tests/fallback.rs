//! Writes that bypass Redis or whose outcome in Redis is unknown: the write-through fallback while
//! Redis is down or cut off, versions PostgreSQL holds above Redis's clock, and a database that
//! hangs instead of refusing.
mod common;

use std::time::{Duration, Instant};

use common::{Stack, WorkerProc, product, proxy::PausableProxy, wait_until};
use redis::AsyncCommands;
use serde_json::Value;
use wbc_core::{store::keys, testkit::RedisServer};

/// Redis that keeps every acknowledged write through a `kill -9`.
fn durable_redis() -> RedisServer {
    RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
}

async fn call(stack: &Stack, method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = stack.http.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(stack: &Stack, api: &str, id: &str) -> (u16, Value) {
    call(stack, reqwest::Method::GET, format!("{api}/products/{id}"), None).await
}

async fn delete(stack: &Stack, api: &str, id: &str) -> (u16, Value) {
    call(stack, reqwest::Method::DELETE, format!("{api}/products/{id}"), None).await
}

/// Waits until the stack's API reaches Redis again after a restart.
async fn redis_back(stack: &Stack) {
    let back = wait_until(Duration::from_secs(10), || async { stack.queue().await["queue_size"].as_u64() }).await;
    assert!(back.is_some(), "the API did not reconnect to Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_write_through_fallback_no_api_serves_the_value_redis_held_before_the_outage() {
    let flags = [("redis-down-policy", "write-through"), ("flush-interval", "20ms")];
    let mut stack = Stack::start_with_redis(durable_redis(), &flags).await;
    let _worker = stack.spawn_worker("w1");
    assert_eq!(stack.put("k1", product("A", 1)).await.0, 200);
    assert_eq!(stack.put("k2", product("X", 1)).await.0, 200);
    stack.drained(Duration::from_secs(10)).await;
    assert_eq!(get(&stack, &stack.api, "k1").await.1["source"], "cache");

    // One API writes k1 through PostgreSQL; another deletes k2 that way, and then goes away.
    let gone_pod = stack.another_api(&stack.store_args()).await;
    stack.redis.kill9();
    let (status, b) = stack.put("k1", product("B", 2)).await;
    assert_eq!((status, b["source"].as_str()), (200, Some("database")), "{b}");
    let (status, gone) = delete(&stack, &gone_pod.url, "k2").await;
    assert_eq!((status, gone["source"].as_str()), (200, Some("database")), "{gone}");
    drop(gone_pod);
    stack.redis.restart();
    redis_back(&stack).await;

    // The API that wrote k1 serves PostgreSQL's value at once.
    let (status, k1) = get(&stack, &stack.api, "k1").await;
    assert_eq!((status, k1["name"].as_str()), (200, Some("B")), "GET k1 after the outage: {k1}");
    // The delete reaches Redis through the worker, which applies what PostgreSQL recorded.
    let deleted =
        wait_until(Duration::from_secs(10), || async { (get(&stack, &stack.api, "k2").await.0 == 404).then_some(()) })
            .await;
    let k2 = get(&stack, &stack.api, "k2").await;
    assert!(deleted.is_some(), "GET k2 after its delete: {k2:?}");

    // The versions PostgreSQL issued reached Redis, so later writes are newer.
    let vmax: Option<i64> = stack.redis().await.hget(keys::product("k1"), "vmax").await.unwrap();
    assert!(vmax >= b["version"].as_i64(), "vmax {vmax:?} is below the fallback's version {b}");
    let (_, c) = stack.put("k1", product("C", 3)).await;
    assert!(c["version"].as_i64() > b["version"].as_i64(), "{c} is not newer than {b}");
    stack.drained(Duration::from_secs(10)).await;
    assert_eq!(stack.rows().await["k1"].1, "C");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_write_stalled_on_a_cut_link_never_lands_over_a_newer_acknowledged_write() {
    let flags = [("redis-down-policy", "write-through"), ("flush-interval", "20ms")];
    let stack = Stack::start(&flags).await;
    let _worker = stack.spawn_worker("w1");
    assert_eq!(stack.put("k", product("before", 0)).await.0, 200);
    stack.drained(Duration::from_secs(10)).await;
    let link = PausableProxy::start(stack.redis.port()).await;
    let cut_off =
        stack.another_api(&wbc_core::StoreArgs { redis_url: Some(link.redis_url()), ..stack.store_args() }).await;
    assert_eq!(get(&stack, &cut_off.url, "k").await.1["name"], "before", "the proxy does not forward");

    // The link stalls: the write reaches Redis's socket, or not, and the API cannot tell.
    link.pause();
    let start = Instant::now();
    let (status, a) =
        call(&stack, reqwest::Method::PUT, format!("{}/products/k", cut_off.url), Some(product("A", 1))).await;
    assert_eq!((status, a["source"].as_str()), (200, Some("database")), "{a}");
    let fell_back_after = start.elapsed();
    // A later write through a healthy link, acknowledged and flushed.
    let (status, b) = stack.put("k", product("B", 2)).await;
    assert_eq!((status, b["source"].as_str()), (200, Some("cache")), "{b}");
    assert!(b["version"].as_i64() > a["version"].as_i64(), "B {b} is not newer than A {a}");
    stack.drained(Duration::from_secs(10)).await;
    assert_eq!(stack.rows().await["k"].1, "B");

    // The link heals and delivers the stalled write; it must not apply.
    link.resume();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.drained(Duration::from_secs(10)).await;
    let rows = stack.rows().await;
    assert_eq!(
        (rows["k"].1.as_str(), rows["k"].0),
        ("B", b["version"].as_i64().unwrap()),
        "PostgreSQL holds {:?}",
        rows["k"]
    );
    assert_eq!(get(&stack, &stack.api, "k").await.1["name"], "B");
    assert!(fell_back_after < Duration::from_secs(20), "the fallback took {fell_back_after:?}");
}

/// Puts rows in PostgreSQL, for keys Redis does not hold, with versions far above Redis's clock
/// (as after a clock step back, or rows versioned by a clock that runs ahead). Returns that version.
async fn rows_ahead_of_the_redis_clock(stack: &Stack, ids: &[&str]) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut stack.redis().await).await.unwrap();
    let ahead = secs * 1_000_000 + micros + 1_000_000_000_000;
    for id in ids {
        sqlx::query("INSERT INTO products (id, name, price, quantity, version) VALUES ($1, 'ahead', 1, 1, $2)")
            .bind(id)
            .bind(ahead)
            .execute(&stack.pool)
            .await
            .unwrap();
    }
    ahead
}

/// A PUT and a DELETE of keys whose rows are ahead of Redis's clock are persisted, not skipped as
/// stale, and read back.
async fn writes_over_rows_ahead_of_the_clock_persist(flags: &[(&str, &str)]) {
    let stack = Stack::start(flags).await;
    let _worker = stack.spawn_worker("w1");
    let ahead = rows_ahead_of_the_redis_clock(&stack, &["p-1", "d-1"]).await;
    let (status, put) = stack.put("p-1", product("new", 2)).await;
    assert_eq!(status, 200, "{put}");
    let (status, del) = delete(&stack, &stack.api, "d-1").await;
    assert_eq!(status, 200, "{del}");
    stack.drained(Duration::from_secs(10)).await;
    let rows = stack.rows().await;
    assert_eq!(rows["p-1"].1, "new", "the PUT was not persisted: {:?} (the API answered {put})", rows["p-1"]);
    assert!(rows["d-1"].3, "the DELETE was not persisted: {:?} (the API answered {del})", rows["d-1"]);
    assert!(rows["p-1"].0 > ahead && rows["d-1"].0 > ahead);
    assert_eq!((rows["p-1"].0, rows["d-1"].0), (put["version"].as_i64().unwrap(), del["version"].as_i64().unwrap()));
    assert_eq!(get(&stack, &stack.api, "p-1").await.1["name"], "new");
    assert_eq!(get(&stack, &stack.api, "d-1").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_behind_writes_over_rows_ahead_of_the_redis_clock_are_persisted() {
    writes_over_rows_ahead_of_the_clock_persist(&[("flush-interval", "20ms")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_through_writes_over_rows_ahead_of_the_redis_clock_are_persisted() {
    writes_over_rows_ahead_of_the_clock_persist(&[("write-mode", "write-through")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_write_through_writes_leave_no_redis_key_without_a_ttl() {
    let stack = Stack::start(&[("write-mode", "write-through")]).await;
    sqlx::query("ALTER TABLE products ADD CONSTRAINT refused CHECK (name <> 'refused')")
        .execute(&stack.pool)
        .await
        .unwrap();
    for _ in 0..5 {
        let url = format!("{}/products", stack.api);
        let (status, body) = call(&stack, reqwest::Method::POST, url, Some(product("refused", 1))).await;
        assert!(status >= 500, "{status} {body}");
    }
    let mut redis = stack.redis().await;
    let products: Vec<String> = redis.keys(format!("{}*", keys::PRODUCT_PREFIX)).await.unwrap();
    assert!(!products.is_empty(), "the writes reserved no version");
    for key in products {
        let ttl_ms: i64 = redis.pttl(&key).await.unwrap();
        assert!(ttl_ms > 0, "{key} never expires (PTTL {ttl_ms})");
    }
}

async fn put_via(http: &reqwest::Client, api: &str, id: &str) -> (u16, Value) {
    let r = http.put(format!("{api}/products/{id}")).json(&product("p", 1)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Makes every write of the row `id` take `secs` in PostgreSQL, so that a test can freeze the
/// server while the statement is in flight.
async fn slow_writes_of(stack: &Stack, id: &str, secs: f64) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN PERFORM pg_sleep({secs}); RETURN NEW; END'; \
         CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON products FOR EACH ROW WHEN (NEW.id = '{id}') \
           EXECUTE FUNCTION slow()"
    ))
    .execute(&stack.pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_postgres_fails_a_write_through_request_with_503_within_the_statement_timeout() {
    let mut stack = Stack::start(&[("write-mode", "write-through"), ("database-statement-timeout", "1s")]).await;
    slow_writes_of(&stack, "during", 0.6).await;
    let timeout = Duration::from_secs(1);
    let api = stack.another_api(&stack.store_args()).await;
    let http = stack.http.clone();
    assert_eq!(put_via(&http, &api.url, "before").await.0, 200);
    // The server freezes while the statement is in flight.
    let start = Instant::now();
    let during = tokio::spawn({
        let (http, url) = (http.clone(), api.url.clone());
        async move { put_via(&http, &url, "during").await }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    stack.pg.pause();
    let answer = tokio::time::timeout(Duration::from_secs(20), during).await;
    let elapsed = start.elapsed();
    stack.pg.resume();
    let (status, body) = answer.unwrap_or_else(|_| panic!("the request still hung after {elapsed:?}")).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("postgres"), "{body}");
    assert!(elapsed < timeout * 4, "the request took {elapsed:?}");
    let recovered = wait_until(Duration::from_secs(10), || async {
        (put_via(&http, &api.url, "after").await.0 == 200).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "writes did not recover after SIGCONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_postgres_times_flushes_out_and_the_worker_recovers_after_sigcont() {
    let mut stack = Stack::start(&[("flush-interval", "20ms"), ("retry-max-delay", "200ms")]).await;
    slow_writes_of(&stack, "slow", 1.0).await;
    let worker = WorkerProc::spawn(&stack, "w1", &[("DATABASE_STATEMENT_TIMEOUT", "2s")]);
    worker.ready().await;
    assert_eq!(stack.put("slow", product("w", 0)).await.0, 200);
    let claimed =
        wait_until(Duration::from_secs(10), || async { (stack.queue().await["in_flight"] == 1).then_some(()) }).await;
    assert!(claimed.is_some(), "the worker did not claim the key");
    // The server freezes while the batch's upsert is in flight: it must fail, not hang.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.pg.pause();
    let retried = wait_until(Duration::from_secs(15), || async {
        worker.metric(r#"wbc_worker_retries_total{class="transient"}"#).await.filter(|n| *n >= 2.0)
    })
    .await;
    stack.pg.resume();
    assert!(retried.is_some(), "the flush hung instead of failing and being retried");
    stack.drained(Duration::from_secs(30)).await;
    assert_eq!(stack.rows().await["slow"].1, "w");
}
