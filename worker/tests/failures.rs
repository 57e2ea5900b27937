//! Failure handling: database outages, poison records and the dead-letter queue, simulated
//! failures, loss of Redis data, Redis crashes and outages, and SIGTERM's grace period.
mod common;

use std::time::{Duration, Instant};

use common::{Stack, WorkerProc, product, wait_until};
use redis::AsyncCommands;
use serde_json::json;
use wbc_core::{store::keys, testkit::RedisServer};

const FAST_RETRY: &[(&str, &str)] =
    &[("flush-interval", "20ms"), ("retry-initial-delay", "20ms"), ("retry-max-delay", "200ms"), ("max-retries", "2")];

async fn write_many(stack: &Stack, prefix: &str, n: usize) {
    for i in 0..n {
        let (status, body) = stack.put(&format!("{prefix}-{i}"), product(prefix, i as i64)).await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn post(stack: &Stack, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = stack.http.post(format!("{}{path}", stack.api)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_is_retried_until_it_ends_and_nothing_is_dead_lettered() {
    let mut stack = Stack::start(FAST_RETRY).await;
    let worker = stack.spawn_worker("w1");
    worker.ready().await;
    stack.pg.stop();
    write_many(&stack, "outage", 200).await;
    let retried = wait_until(Duration::from_secs(60), || async {
        worker.metric(r#"wbc_worker_retries_total{class="transient"}"#).await.filter(|r| *r >= 2.0)
    })
    .await;
    assert!(retried.is_some(), "the worker did not retry while PostgreSQL was down");
    let q = stack.queue().await;
    assert_eq!(
        q["queue_size"].as_u64().unwrap() + q["in_flight"].as_u64().unwrap(),
        200,
        "writes wait in the queue: {q}"
    );
    stack.pg.restart();
    stack.drained(Duration::from_secs(60)).await;
    assert_eq!(stack.rows().await.len(), 200);
    assert_eq!(stack.queue().await["dead_letters"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_record_is_dead_lettered_while_the_rest_of_its_batch_persists() {
    let stack = Stack::start(FAST_RETRY).await;
    stack.refuse_poison().await;
    write_many(&stack, "good", 99).await;
    let (_, poison) = stack.put("bad-1", product("poison", 1)).await;
    // Every key is due before the worker starts, so the poison record shares a batch with the rest.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let worker = stack.spawn_worker("w1");
    stack.drained(Duration::from_secs(60)).await;
    assert_eq!(stack.rows().await.len(), 99, "the good rows of the batch persist");

    let (status, dlq) = stack.get_json("/admin/dlq").await;
    assert_eq!((status, dlq["count"].clone()), (200, json!(1)), "{dlq}");
    let letter = &dlq["dead_letters"][0];
    assert_eq!((letter["id"].as_str(), letter["version"].clone()), (Some("bad-1"), poison["version"].clone()));
    assert_eq!(letter["attempts"], 3, "one try and max_retries=2 retries");
    assert!(letter["error"].as_str().unwrap().contains("no_poison"), "{letter}");
    assert_eq!(letter["value"]["name"], "poison");
    assert_eq!(worker.metric(r#"wbc_worker_records_total{outcome="dead_lettered"}"#).await, Some(1.0));
    assert_eq!(worker.metric(r#"wbc_worker_retries_total{class="permanent"}"#).await, Some(2.0));
    assert!(worker.metric("wbc_worker_batch_splits_total").await.unwrap() >= 1.0);
    assert!(worker.log_text().contains("dead-letter queue"), "no error log line for the dead letter");

    // Once the cause is fixed, a replay persists it.
    sqlx::query("ALTER TABLE products DROP CONSTRAINT no_poison").execute(&stack.pool).await.unwrap();
    assert_eq!(
        post(&stack, "/admin/dlq/replay", json!({"id": "bad-1"})).await,
        (200, json!({"queued": 1, "superseded": 0, "kept": 0}))
    );
    stack.drained(Duration::from_secs(60)).await;
    assert_eq!(stack.rows().await["bad-1"].0, poison["version"].as_i64().unwrap());
    assert_eq!(stack.get_json("/admin/dlq").await.1["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_dead_letter_never_overwrites_a_newer_write() {
    let stack = Stack::start(FAST_RETRY).await;
    stack.refuse_poison().await;
    let _worker = stack.spawn_worker("w1");
    stack.put("k", product("poison", 1)).await;
    stack.put("j", product("poison", 1)).await;
    let parked = wait_until(Duration::from_secs(60), || async {
        (stack.get_json("/admin/dlq").await.1["count"] == 2).then_some(())
    })
    .await;
    assert!(parked.is_some(), "the poison records were not dead-lettered");
    let (_, newer) = stack.put("k", product("fixed", 2)).await;
    stack.drained(Duration::from_secs(60)).await;
    sqlx::query("ALTER TABLE products DROP CONSTRAINT no_poison").execute(&stack.pool).await.unwrap();
    // The body names no key: every dead letter is replayed, and k's is older than its row.
    assert_eq!(
        post(&stack, "/admin/dlq/replay", json!({})).await,
        (200, json!({"queued": 1, "superseded": 1, "kept": 0}))
    );
    stack.drained(Duration::from_secs(60)).await;
    let rows = stack.rows().await;
    assert_eq!((rows["k"].0, rows["k"].1.as_str()), (newer["version"].as_i64().unwrap(), "fixed"));
    assert_eq!(rows["j"].1, "poison");
    assert_eq!(stack.get_json("/products/k").await.1["name"], "fixed");
    for (body, field) in [(json!({"id": "a b"}), "id"), (json!({"key": "k"}), "key")] {
        let (status, err) = post(&stack, "/admin/dlq/replay", body).await;
        assert_eq!((status, err["field"].as_str()), (400, Some(field)), "{err}");
    }
    assert_eq!(stack.get_json("/admin/dlq?limit=0").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulated_transient_failures_are_retried_and_show_in_the_metrics() {
    let stack = Stack::start(&[
        ("flush-interval", "20ms"),
        ("batch-size", "20"),
        ("retry-initial-delay", "10ms"),
        ("retry-max-delay", "50ms"),
    ])
    .await;
    let worker = WorkerProc::spawn(&stack, "w1", &[("SIMULATE_DB_FAILURE", "true"), ("FAILURE_RATE", "0.5")]);
    write_many(&stack, "sim", 300).await;
    stack.drained(Duration::from_secs(60)).await;
    assert_eq!(stack.rows().await.len(), 300);
    assert_eq!(stack.queue().await["dead_letters"], 0);
    for series in [
        r#"wbc_worker_records_total{outcome="first_try"}"#,
        r#"wbc_worker_records_total{outcome="after_retry"}"#,
        r#"wbc_worker_retries_total{class="transient"}"#,
    ] {
        assert!(worker.metric(series).await.unwrap_or(0.0) > 0.0, "{series} did not move");
    }
    assert!(worker.log_text().contains("simulated transient database failure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulated_permanent_failures_end_in_the_dead_letter_queue() {
    let stack = Stack::start(FAST_RETRY).await;
    let worker = WorkerProc::spawn(
        &stack,
        "w1",
        &[("SIMULATE_DB_FAILURE", "true"), ("FAILURE_RATE", "0.1"), ("FAILURE_KIND", "permanent")],
    );
    write_many(&stack, "perm", 200).await;
    stack.drained(Duration::from_secs(60)).await;
    let dead = stack.queue().await["dead_letters"].as_u64().unwrap();
    assert!(dead > 0 && dead < 200, "{dead} dead letters of 200");
    assert_eq!(stack.rows().await.len() as u64 + dead, 200, "each record is persisted or dead-lettered");
    assert_eq!(worker.metric(r#"wbc_worker_records_total{outcome="dead_lettered"}"#).await, Some(dead as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exercise_4_a_flushall_while_the_worker_is_stopped_is_detected_and_reported() {
    let stack = Stack::start(&[("flush-interval", "20ms")]).await;
    let mut worker = stack.spawn_worker("w1");
    stack.put("before", product("before", 0)).await;
    stack.drained(Duration::from_secs(60)).await;
    assert!(stack.queue().await["last_data_loss_at_ms"].is_null());
    worker.kill9();
    write_many(&stack, "doomed", 10).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut stack.redis().await).await.unwrap();
    worker.start();
    let at =
        wait_until(Duration::from_secs(60), || async { stack.queue().await["last_data_loss_at_ms"].as_u64() }).await;
    assert!(at.is_some(), "the loss was not reported in /admin/queue");
    // The worker counts the loss after recording it in Redis and PostgreSQL, so it may lag a little.
    let counted = wait_until(Duration::from_secs(60), || async {
        worker.metric("wbc_data_loss_detected_total").await.filter(|n| *n > 0.0)
    })
    .await;
    assert_eq!(counted, Some(1.0));
    assert!(worker.log_text().contains("DATA LOSS"), "no error log line: {}", worker.log_text());
    assert!(!stack.rows().await.contains_key("doomed-0"), "the flushed writes are gone, as the seed says");
    // It keeps working: new writes persist.
    stack.put("after", product("after", 1)).await;
    stack.drained(Duration::from_secs(60)).await;
    assert!(stack.rows().await.contains_key("after"));
    let stored: Option<String> = sqlx::query_scalar("SELECT value FROM wbc_meta WHERE key = 'data_loss_at_ms'")
        .fetch_optional(&stack.pool)
        .await
        .unwrap();
    assert_eq!(stored, at.map(|a| a.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_aof_always_a_kill_9_of_redis_loses_no_acknowledged_write() {
    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always", "--save", ""]);
    let mut stack = Stack::start_with_redis(redis, &[("flush-interval", "1h")]).await;
    let mut idle = stack.spawn_worker("idle");
    wait_until(Duration::from_secs(60), || async {
        stack.redis().await.exists::<_, bool>(keys::CHECKPOINT).await.ok().filter(|e| *e)
    })
    .await;
    let mut acked = Vec::new();
    for i in 0..300 {
        acked.push(stack.put(&format!("aof-{i}"), product("aof", i)).await.1["version"].as_i64().unwrap());
    }
    stack.redis.kill9();
    stack.redis.restart();
    let q =
        wait_until(Duration::from_secs(60), || async { Some(stack.queue().await).filter(|q| q["queue_size"] == 300) })
            .await;
    assert!(q.is_some(), "the queue did not survive: {}", stack.queue().await);
    tokio::time::sleep(Duration::from_millis(1500)).await; // a housekeeping round of the worker
    assert!(stack.queue().await["last_data_loss_at_ms"].is_null(), "no data was lost, so none may be reported");
    idle.kill9();
    let _worker = WorkerProc::spawn(&stack, "w2", &[("FLUSH_INTERVAL", "10ms")]);
    stack.drained(Duration::from_secs(60)).await;
    let rows = stack.rows().await;
    for (i, version) in acked.iter().enumerate() {
        assert_eq!(rows[&format!("aof-{i}")].0, *version);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_redis_is_down_reads_come_from_postgres_and_writes_fail_fast_with_503() {
    let mut stack = Stack::start(&[("write-mode", "write-through")]).await;
    stack.put("r-1", product("stored", 1)).await;
    stack.redis.kill9();
    let (status, body) = stack.get_json("/products/r-1").await;
    assert_eq!((status, body["source"].as_str()), (200, Some("database")), "{body}");
    let start = Instant::now();
    let (status, body) = stack.put("r-2", product("refused", 2)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("redis is unavailable"), "{body}");
    assert!(start.elapsed() < Duration::from_secs(20), "the write hung for {:?}", start.elapsed());
    assert!(!stack.rows().await.contains_key("r-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_write_through_fallback_writes_reach_postgres_while_redis_is_down() {
    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always", "--save", ""]);
    let mut stack =
        Stack::start_with_redis(redis, &[("redis-down-policy", "write-through"), ("flush-interval", "20ms")]).await;
    let (_, before) = stack.put("f-1", product("queued", 1)).await;
    stack.redis.kill9();
    let (status, body) = stack.put("f-1", product("fallback", 2)).await;
    assert_eq!((status, body["source"].as_str()), (200, Some("database")), "{body}");
    assert!(body["version"].as_i64() > before["version"].as_i64());
    let rows = stack.rows().await;
    assert_eq!((rows["f-1"].0, rows["f-1"].1.as_str()), (body["version"].as_i64().unwrap(), "fallback"));
    // The older write still queued in Redis is flushed once Redis is back, and cannot overwrite
    // the newer row; its cached value is dropped so that reads see the newer one.
    stack.redis.restart();
    // The first request after the restart may find the API's connection still down.
    let queued = wait_until(Duration::from_secs(10), || async { stack.queue().await["queue_size"].as_u64() }).await;
    assert_eq!(queued, Some(1));
    let worker = stack.spawn_worker("w1");
    stack.drained(Duration::from_secs(60)).await;
    assert_eq!(stack.rows().await["f-1"].1, "fallback");
    assert_eq!(worker.metric("wbc_worker_rows_stale_total").await, Some(1.0));
    let (_, read) = stack.get_json("/products/f-1").await;
    assert_eq!((read["name"].as_str(), read["source"].as_str()), (Some("fallback"), Some("database")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_hands_back_a_batch_that_outlasts_the_grace_period() {
    let stack = Stack::start(&[("flush-interval", "10ms")]).await;
    stack.slow_inserts().await;
    write_many(&stack, "slow", 50).await;
    let mut worker = WorkerProc::spawn(&stack, "w1", &[("SHUTDOWN_GRACE", "300ms")]);
    let claimed =
        wait_until(Duration::from_secs(60), || async { (stack.queue().await["in_flight"] == 50).then_some(()) }).await;
    assert!(claimed.is_some(), "the worker did not claim the batch");
    assert!(worker.terminate(Duration::from_secs(10)), "the worker did not exit cleanly within the grace period");
    let q = stack.queue().await;
    assert_eq!(
        (q["in_flight"].clone(), q["queue_size"].clone()),
        (json!(0), json!(50)),
        "the batch was not handed back: {q}"
    );
}
