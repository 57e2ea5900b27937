//! Loss of Redis data: a Redis that goes back in time (an older snapshot, an `everysec` crash, a
//! promoted replica) is detected and reported like an empty one, and detection survives a crash
//! at any of its steps.
mod common;

use std::time::Duration;

use common::{Stack, product, wait_until};
use wbc_core::testkit::RedisServer;

/// The highest write sequence that the worker has recorded in PostgreSQL.
async fn observed_seq(stack: &Stack) -> i64 {
    let seq: Option<String> =
        sqlx::query_scalar("SELECT value FROM wbc_meta WHERE key = 'seq'").fetch_optional(&stack.pool).await.unwrap();
    seq.and_then(|s| s.parse().ok()).unwrap_or(-1)
}

/// Whether the worker has recorded what it knows of Redis in PostgreSQL.
async fn worker_remembers_redis(stack: &Stack) -> bool {
    wait_until(Duration::from_secs(60), || async {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM wbc_meta").fetch_one(&stack.pool).await.unwrap();
        (rows > 0).then_some(())
    })
    .await
    .is_some()
}

async fn loss_reported(stack: &Stack, worker: &common::WorkerProc) -> bool {
    // The metric counts the report in PostgreSQL; `/admin/queue` shows it once Redis is marked.
    wait_until(Duration::from_secs(60), || async {
        let counted = worker.metric("wbc_data_loss_detected_total").await.is_some_and(|n| n >= 1.0);
        (counted && !stack.queue().await["last_data_loss_at_ms"].is_null()).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_from_an_older_snapshot_is_detected_as_a_loss_with_a_lower_bound() {
    let redis = RedisServer::start_with(&["--save", "", "--appendonly", "no"]);
    let mut stack = Stack::start_with_redis(redis, &[("flush-interval", "1h")]).await;
    let worker = stack.spawn_worker("w1");
    stack.put("k1", product("saved", 1)).await;
    assert!(worker_remembers_redis(&stack).await, "the worker never recorded Redis's state in PostgreSQL");
    let _: () = redis::cmd("SAVE").query_async(&mut stack.redis().await).await.unwrap();
    for i in 2..=4 {
        let (status, _) = stack.put(&format!("k{i}"), product("doomed", i)).await;
        assert_eq!(status, 200);
    }
    // The worker must have seen the newer state, or nothing could tell that it went away; a
    // worker that never looks is caught by the assertion below.
    wait_until(Duration::from_secs(60), || async { (observed_seq(&stack).await >= 4).then_some(()) }).await;
    stack.redis.kill9();
    stack.redis.restart(); // loads the snapshot: k1 only
    assert!(loss_reported(&stack, &worker).await, "the rollback went unnoticed: {}", worker.log_text());
    let log = worker.log_text();
    assert!(log.contains("DATA LOSS") && log.contains("at_least_writes=3"), "{log}");
    let stored: Option<String> = sqlx::query_scalar("SELECT value FROM wbc_meta WHERE key = 'data_loss_at_ms'")
        .fetch_optional(&stack.pool)
        .await
        .unwrap();
    assert!(stored.is_some(), "the loss is not recorded in PostgreSQL");
    // Reported once, and it keeps working.
    stack.put("after", product("after", 1)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(worker.metric("wbc_data_loss_detected_total").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_in_the_middle_of_loss_detection_still_reports_the_loss_after_restart() {
    let mut stack = Stack::start(&[("flush-interval", "20ms")]).await;
    let mut worker = stack.spawn_worker("w1");
    stack.put("before", product("before", 0)).await;
    stack.drained(Duration::from_secs(60)).await;
    assert!(worker_remembers_redis(&stack).await, "the worker never recorded Redis's state in PostgreSQL");
    // Hold the products table so that the worker's recovery blocks where it reads PostgreSQL's
    // highest version, then kill it there.
    let mut lock = stack.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE products IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut stack.redis().await).await.unwrap();
    let blocked = wait_until(Duration::from_secs(60), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%products%'",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        (waiting > 0).then_some(())
    })
    .await;
    assert!(blocked.is_some(), "the worker never reached PostgreSQL while recovering");
    worker.kill9();
    lock.rollback().await.unwrap();
    worker.start();
    assert!(loss_reported(&stack, &worker).await, "the loss went unreported after the crash: {}", worker.log_text());
    let floor: Option<i64> = redis::cmd("GET")
        .arg(wbc_core::store::keys::VERSION_FLOOR)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    let max: i64 = sqlx::query_scalar("SELECT max(version) FROM products").fetch_one(&stack.pool).await.unwrap();
    assert!(floor >= Some(max), "the version floor {floor:?} is below PostgreSQL's highest version {max}");
    let _ = &mut stack;
}

/// The record of losses that a `/readyz` answer carries.
async fn reported_losses(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json::<serde_json::Value>().await.unwrap()["data_loss"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_reports_a_detected_loss_from_postgresql_and_still_after_a_worker_restart() {
    let stack = Stack::start(&[("flush-interval", "1h")]).await;
    let mut worker = stack.spawn_worker("w1");
    worker.ready().await;
    let readyz = worker.metrics_url.replace("/metrics", "/readyz");
    let none = serde_json::json!({"count": 0, "last_detected_at_ms": null, "at_least_writes": 0});
    assert_eq!(reported_losses(&readyz).await, none);
    for i in 1..=3 {
        assert_eq!(stack.put(&format!("k{i}"), product("doomed", i)).await.0, 200);
    }
    wait_until(Duration::from_secs(60), || async { (observed_seq(&stack).await >= 3).then_some(()) }).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut stack.redis().await).await.unwrap();
    assert!(loss_reported(&stack, &worker).await, "the loss went unnoticed: {}", worker.log_text());

    let reported = reported_losses(&readyz).await;
    let at_ms: String = sqlx::query_scalar("SELECT value FROM wbc_meta WHERE key = 'data_loss_at_ms'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    let expected =
        serde_json::json!({"count": 1, "last_detected_at_ms": at_ms.parse::<u64>().unwrap(), "at_least_writes": 3});
    assert_eq!(reported, expected);
    assert_eq!(stack.get_json("/readyz").await.1["data_loss"], expected, "the API reports the same record");
    worker.kill9();
    worker.start();
    worker.ready().await;
    assert_eq!(reported_losses(&readyz).await, expected, "the record survives a restart of the worker");
}
