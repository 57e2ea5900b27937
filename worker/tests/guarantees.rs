//! The design's guarantees 1, 2, 3 and 6, against real Redis, PostgreSQL and worker processes.
mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Stack, WorkerProc, product, wait_until};
use redis::AsyncCommands;
use serde_json::json;
use wbc_core::store::keys;

/// Highest acknowledged version per key, with the quantity that write carried.
type Acked = Arc<Mutex<HashMap<String, (i64, i64)>>>;

/// Writers that PUT random keys until `stop`, recording every acknowledged write.
fn writers(
    stack: &Arc<Stack>,
    n: usize,
    keys: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked: Acked = Arc::default();
    let tasks = (0..n)
        .map(|w| {
            let (stack, acked, stop) = (stack.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i: i64 = 0;
                while !*stop.borrow() {
                    i += 1;
                    let id = format!("k-{}", (i as usize * 7919 + w * 104_729) % keys);
                    let quantity = (w as i64) * 1_000_000 + i;
                    let (status, body) = stack.put(&id, product("chaos", quantity)).await;
                    assert_eq!(status, 200, "{body}");
                    let version = body["version"].as_i64().unwrap();
                    let mut a = acked.lock().unwrap();
                    let e = a.entry(id).or_insert((0, 0));
                    if version > e.0 {
                        *e = (version, quantity);
                    }
                }
            })
        })
        .collect();
    (acked, tasks)
}

/// Every key in PostgreSQL holds exactly its last acknowledged version and value.
async fn assert_all_persisted(stack: &Stack, acked: &Acked) {
    let rows = stack.rows().await;
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let mut wrong = Vec::new();
    for (id, (version, quantity)) in &acked {
        match rows.get(id) {
            Some((v, _, q, false)) if v == version && q == quantity => {}
            other => wrong.push(format!("{id}: acked v{version} q{quantity}, postgres {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{} of {} keys wrong, e.g. {:?}", wrong.len(), acked.len(), &wrong[..wrong.len().min(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_worker_mid_flush_loses_no_acknowledged_write() {
    let stack =
        Arc::new(Stack::start(&[("flush-interval", "20ms"), ("batch-size", "2000"), ("lease-timeout", "1s")]).await);
    let mut worker = stack.spawn_worker("w1");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (acked, tasks) = writers(&stack, 16, 5000, stop_rx);
    let mut redis = stack.redis().await;
    let mut kills_mid_flush = 0;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Kill the worker the moment it holds claimed keys, so a batch is cut off mid-flush.
        let caught = wait_until(Duration::from_secs(60), || {
            let mut redis = redis.clone();
            async move { (redis.scard::<_, u64>(keys::IN_FLIGHT).await.unwrap() > 0).then_some(()) }
        })
        .await;
        worker.kill9();
        let stranded: u64 = redis.scard(keys::IN_FLIGHT).await.unwrap();
        if caught.is_some() && stranded > 0 {
            kills_mid_flush += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        worker.start();
    }
    stop_tx.send_replace(true);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(kills_mid_flush >= 1, "no kill caught the worker with keys in flight");
    stack.drained(Duration::from_secs(60)).await;
    assert_all_persisted(&stack, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_one_queue_without_flushing_a_key_twice() {
    let stack = Arc::new(Stack::start(&[("flush-interval", "20ms"), ("batch-size", "100")]).await);
    let w1 = stack.spawn_worker("w1");
    let w2 = stack.spawn_worker("w2");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (acked, tasks) = writers(&stack, 8, 2000, stop_rx);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_tx.send_replace(true);
    for t in tasks {
        t.await.unwrap();
    }
    stack.drained(Duration::from_secs(60)).await;
    assert_all_persisted(&stack, &acked).await;
    let mut persisted = Vec::new();
    for w in [&w1, &w2] {
        persisted.push(w.metric("wbc_worker_rows_persisted_total").await.unwrap());
        // A key flushed by both workers at one version shows up as a stale row on one of them.
        assert_eq!(w.metric("wbc_worker_rows_stale_total").await, Some(0.0), "a key was flushed twice");
    }
    assert!(persisted.iter().all(|&p| p > 0.0), "both workers should take a share: {persisted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_version_never_overwrites_a_newer_one_even_after_redis_is_flushed() {
    let stack = Stack::start(&[("flush-interval", "20ms")]).await;
    let _worker = stack.spawn_worker("w1");
    let (_, first) = stack.put("p-1", product("first", 1)).await;
    stack.drained(Duration::from_secs(60)).await;
    let v1 = first["version"].as_i64().unwrap();

    // A stale delivery of an older version, or of the same one, changes nothing; in a batch with
    // a new row, only the stale one is reported.
    let older = wbc_core::Record::product("p-1", serde_json::from_value(product("stale", 0)).unwrap(), v1 - 1);
    let again = wbc_core::Record::product("p-1", serde_json::from_value(product("again", 0)).unwrap(), v1);
    let fresh = wbc_core::Record::product("p-3", serde_json::from_value(product("fresh", 0)).unwrap(), v1 - 1);
    assert_eq!(wbc_core::db::upsert(&stack.pool, &[older]).await.unwrap(), ["p-1"]);
    assert_eq!(wbc_core::db::upsert(&stack.pool, &[fresh, again]).await.unwrap(), ["p-1"]);
    let rows = stack.rows().await;
    assert_eq!((rows["p-1"].1.as_str(), rows["p-3"].1.as_str()), ("first", "fresh"));

    // PostgreSQL holds a version from far ahead (a clock that later went back), then Redis loses everything.
    let ahead = v1 + 3_600_000_000;
    let future = wbc_core::Record::product("p-2", serde_json::from_value(product("future", 2)).unwrap(), ahead);
    assert!(wbc_core::db::upsert(&stack.pool, &[future]).await.unwrap().is_empty());
    let mut redis = stack.redis().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut redis).await.unwrap();
    let detected = wait_until(Duration::from_secs(60), || async {
        let q = stack.queue().await;
        q["last_data_loss_at_ms"].as_u64()
    })
    .await;
    assert!(detected.is_some(), "the loss of Redis data was not reported");

    // Writes continue: each gets a version above anything PostgreSQL holds, and lands.
    let (_, second) = stack.put("p-1", product("second", 3)).await;
    let (_, third) = stack.put("p-2", product("third", 4)).await;
    assert!(second["version"].as_i64().unwrap() > v1);
    assert!(third["version"].as_i64().unwrap() > ahead, "version {} not above the floor {ahead}", third["version"]);
    stack.drained(Duration::from_secs(60)).await;
    let rows = stack.rows().await;
    assert_eq!(rows["p-1"].1, "second");
    assert_eq!(rows["p-2"].1, "third");

    // A delete is a versioned tombstone: an older write cannot bring the row back.
    let r = stack.http.delete(format!("{}/products/p-1", stack.api)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    stack.drained(Duration::from_secs(60)).await;
    let resurrect = wbc_core::Record::product("p-1", serde_json::from_value(product("zombie", 5)).unwrap(), v1 + 1);
    assert_eq!(wbc_core::db::upsert(&stack.pool, &[resurrect]).await.unwrap(), ["p-1"]);
    assert!(stack.rows().await["p-1"].3, "tombstone replaced");
    assert_eq!(stack.get_json("/products/p-1").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_puts_to_one_key_leave_one_queued_entry_and_one_database_write() {
    let stack = Arc::new(Stack::start(&[("flush-interval", "2s")]).await);
    sqlx::query(include_str!("statement_counter.sql")).execute(&stack.pool).await.unwrap();
    let puts: Vec<_> = (0..10)
        .map(|i| {
            let stack = stack.clone();
            tokio::spawn(async move { stack.put("seed-001", product(&format!("v{i}"), i)).await })
        })
        .collect();
    let mut last = (0, json!(null));
    for p in puts {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, 200);
        if body["version"].as_i64().unwrap() > last.0 {
            last = (body["version"].as_i64().unwrap(), body);
        }
    }
    let q = stack.queue().await;
    assert_eq!(q["queue_size"], 1, "{q}");
    let mut redis = stack.redis().await;
    let dirty: Vec<String> = redis.zrange(keys::DIRTY, 0, -1).await.unwrap();
    assert_eq!(dirty, vec!["seed-001".to_owned()]);

    let _worker = stack.spawn_worker("w1");
    stack.drained(Duration::from_secs(60)).await;
    let statements: i64 = sqlx::query_scalar("SELECT n FROM upsert_statements").fetch_one(&stack.pool).await.unwrap();
    assert_eq!(statements, 1, "ten coalesced writes should become one database write");
    let row = &stack.rows().await["seed-001"];
    assert_eq!((row.0, row.1.as_str()), (last.0, last.1["name"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_upserts_one_statement_per_batch() {
    let stack = Stack::start(&[("flush-interval", "10ms"), ("batch-size", "500")]).await;
    sqlx::query(include_str!("statement_counter.sql")).execute(&stack.pool).await.unwrap();
    for i in 0..1000 {
        assert_eq!(stack.put(&format!("b-{i}"), product("batch", i)).await.0, 200);
    }
    // Every key is due before the worker starts, so each claim takes a full batch.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _worker = stack.spawn_worker("w1");
    stack.drained(Duration::from_secs(60)).await;
    assert_eq!(stack.rows().await.len(), 1000);
    let statements: i64 = sqlx::query_scalar("SELECT n FROM upsert_statements").fetch_one(&stack.pool).await.unwrap();
    assert_eq!(statements, 2, "1000 keys in batches of 500 are two statements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_the_batch_in_flight() {
    let stack = Stack::start(&[("flush-interval", "10ms"), ("batch-size", "5000")]).await;
    for i in 0..5000 {
        assert_eq!(stack.put(&format!("t-{i}"), product("term", i)).await.0, 200);
    }
    let mut worker = WorkerProc::spawn(&stack, "w1", &[("SHUTDOWN_GRACE", "20s")]);
    let mut redis = stack.redis().await;
    let caught = wait_until(Duration::from_secs(60), || {
        let mut redis = redis.clone();
        async move { (redis.scard::<_, u64>(keys::IN_FLIGHT).await.unwrap() > 0).then_some(()) }
    })
    .await;
    assert!(caught.is_some(), "the worker never claimed a batch");
    assert!(worker.terminate(Duration::from_secs(30)), "worker did not exit cleanly on SIGTERM");
    let in_flight: u64 = redis.scard(keys::IN_FLIGHT).await.unwrap();
    assert_eq!(in_flight, 0, "SIGTERM left keys in flight");
    let persisted = stack.rows().await.len() as u64;
    let dirty: u64 = redis.zcard(keys::DIRTY).await.unwrap();
    assert!(persisted > 0, "the batch in flight was not finished");
    assert_eq!(persisted + dirty, 5000, "every key is either persisted or queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_refuses_writes_with_retry_after_and_stays_up() {
    let stack = Stack::start(&[("queue-capacity", "5"), ("flush-interval", "3s")]).await;
    for i in 0..5 {
        assert_eq!(stack.put(&format!("q-{i}"), product("fits", i)).await.0, 200);
    }
    let r = stack.http.put(format!("{}/products/q-5", stack.api)).json(&product("over", 5)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "3");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("queue is full"), "{body}");
    // A key already queued can still be updated: it does not take a new slot.
    assert_eq!(stack.put("q-0", product("again", 0)).await.0, 200);
    assert_eq!(stack.get_json("/products/q-1").await.0, 200);
    assert_eq!(stack.get_json("/products/q-5").await.0, 404);
    assert_eq!(stack.queue().await["queue_size"], 5);
    // Once the worker drains the queue, writes are accepted again.
    let _worker = stack.spawn_worker("w1");
    stack.drained(Duration::from_secs(60)).await;
    assert_eq!(stack.put("q-5", product("later", 5)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_writes_through_when_the_policy_says_so() {
    let stack =
        Stack::start(&[("queue-capacity", "2"), ("overflow-policy", "write-through"), ("flush-interval", "1h")]).await;
    for i in 0..2 {
        let (status, body) = stack.put(&format!("o-{i}"), product("queued", i)).await;
        assert_eq!((status, body["source"].as_str()), (200, Some("cache")));
    }
    let (status, body) = stack.put("o-2", product("through", 2)).await;
    assert_eq!((status, body["source"].as_str()), (200, Some("database")), "{body}");
    let rows = stack.rows().await;
    assert_eq!(rows.len(), 1, "only the overflowing write is in PostgreSQL yet");
    assert_eq!(rows["o-2"].0, body["version"].as_i64().unwrap());
    assert_eq!(stack.queue().await["queue_size"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserted_prices_are_the_values_postgresql_casts_from_float8() {
    let pg = wbc_core::testkit::PgServer::start();
    let pool = wbc_core::db::connect(&pg.url(), 2, std::time::Duration::from_secs(30)).await.unwrap();
    wbc_core::db::migrate(&pool).await.unwrap();
    // Halves of a cent, binary approximations on either side of them, and the extremes.
    let prices = [
        0.0,
        9.99,
        19.99,
        0.125,
        1.005,
        2.675,
        0.1 + 0.2,
        1e-7,
        123_456.785,
        1.004_999_999_999_999_7,
        9_999_999_999.99,
    ];
    let records: Vec<_> = prices
        .iter()
        .enumerate()
        .map(|(i, &price)| {
            let mut r =
                wbc_core::Record::product(&format!("c-{i}"), serde_json::from_value(product("c", 1)).unwrap(), 1);
            r.price = price;
            r
        })
        .collect();
    assert!(wbc_core::db::upsert(&pool, &records).await.unwrap().is_empty());
    for r in &records {
        let (stored, cast): (String, String) =
            sqlx::query_as("SELECT price::text, $2::float8::numeric(12, 2)::text FROM products WHERE id = $1")
                .bind(&r.id)
                .bind(r.price)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(stored, cast, "price {}", r.price);
    }
}
