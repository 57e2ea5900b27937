//! The queue's bounds and what it serves: capacity counts the keys in flight, dead letters are
//! not served as stored values, and a value that cannot be decoded is parked, not retried forever.
mod common;

use std::time::Duration;

use common::{Stack, WorkerProc, product, wait_until};
use serde_json::json;
use wbc_core::store::keys;

const FAST_RETRY: &[(&str, &str)] =
    &[("flush-interval", "20ms"), ("retry-initial-delay", "20ms"), ("retry-max-delay", "200ms"), ("max-retries", "1")];

async fn post(stack: &Stack, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = stack.http.post(format!("{}{path}", stack.api)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn queued_keys(stack: &Stack) -> u64 {
    let q = stack.queue().await;
    q["queue_size"].as_u64().unwrap() + q["in_flight"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handing_a_batch_back_never_overfills_the_queue() {
    let stack = Stack::start(&[("flush-interval", "10ms"), ("queue-capacity", "3")]).await;
    stack.slow_inserts().await;
    for i in 0..3 {
        assert_eq!(stack.put(&format!("a-{i}"), product("a", i)).await.0, 200);
    }
    let mut worker = WorkerProc::spawn(&stack, "w1", &[("SHUTDOWN_GRACE", "300ms")]);
    let claimed =
        wait_until(Duration::from_secs(60), || async { (stack.queue().await["in_flight"] == 3).then_some(()) }).await;
    assert!(claimed.is_some(), "the worker did not claim the batch");
    // The three keys in flight fill the queue: a new key is refused.
    for i in 0..3 {
        let (status, body) = stack.put(&format!("b-{i}"), product("b", i)).await;
        assert_eq!(status, 503, "a write was accepted over capacity: {body}");
    }
    assert!(worker.terminate(Duration::from_secs(20)), "the worker did not exit");
    assert!(queued_keys(&stack).await <= 3, "the queue holds more than its capacity: {}", stack.queue().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_into_a_full_queue_keeps_the_dead_letters() {
    let mut flags = FAST_RETRY.to_vec();
    flags.push(("queue-capacity", "2"));
    let stack = Stack::start(&flags).await;
    stack.refuse_poison().await;
    let mut worker = stack.spawn_worker("w1");
    stack.put("p-1", product("poison", 1)).await;
    stack.put("p-2", product("poison", 2)).await;
    let parked = wait_until(Duration::from_secs(60), || async {
        (stack.get_json("/admin/dlq").await.1["count"] == 2).then_some(())
    })
    .await;
    assert!(parked.is_some(), "the poison records were not dead-lettered");
    worker.kill9();
    stack.put("g-1", product("good", 1)).await;
    stack.put("g-2", product("good", 2)).await;
    let (status, body) = post(&stack, "/admin/dlq/replay", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["queued"].as_u64(), body["kept"].as_u64()), (Some(0), Some(2)), "{body}");
    assert!(queued_keys(&stack).await <= 2, "the queue holds more than its capacity: {}", stack.queue().await);
    assert_eq!(stack.get_json("/admin/dlq").await.1["count"], 2, "a kept dead letter stays listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_lettered_write_is_not_served_as_if_it_were_stored() {
    let stack = Stack::start(FAST_RETRY).await;
    let _worker = stack.spawn_worker("w1");
    let (_, stored) = stack.put("d-1", product("stored", 1)).await;
    stack.drained(Duration::from_secs(60)).await;
    stack.refuse_poison().await;
    stack.put("d-1", product("poison", 2)).await;
    stack.put("d-2", product("poison", 3)).await;
    let parked = wait_until(Duration::from_secs(60), || async {
        (stack.get_json("/admin/dlq").await.1["count"] == 2).then_some(())
    })
    .await;
    assert!(parked.is_some(), "the poison records were not dead-lettered");
    stack.drained(Duration::from_secs(60)).await;
    // GET answers what PostgreSQL holds: the older stored value, or nothing.
    let (status, read) = stack.get_json("/products/d-1").await;
    assert_eq!((status, read["name"].as_str()), (200, Some("stored")), "{read}");
    assert_eq!(read["version"], stored["version"]);
    let (status, read) = stack.get_json("/products/d-2").await;
    assert_eq!(status, 404, "a dead-lettered new product is served: {read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_value_that_cannot_be_decoded_is_dead_lettered_with_the_reason() {
    let stack = Stack::start(&[("flush-interval", "20ms")]).await;
    let mut redis = stack.redis().await;
    // As an upgrade that added a field would leave it for an older worker.
    let _: () = redis::cmd("HSET")
        .arg(keys::product("odd-1"))
        .arg(&["data", r#"{"name":"odd","price":1.0,"quantity":1,"colour":"red"}"#, "deleted", "0"])
        .arg(&["version", "1000", "vmax", "1000"])
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD").arg(keys::DIRTY).arg(0).arg("odd-1").query_async(&mut redis).await.unwrap();
    for i in 0..20 {
        stack.put(&format!("fine-{i}"), product("fine", i)).await;
    }
    let _worker = stack.spawn_worker("w1");
    stack.drained(Duration::from_secs(60)).await;
    assert_eq!(stack.rows().await.len(), 20, "the decodable values persist");
    let (_, dlq) = stack.get_json("/admin/dlq").await;
    assert_eq!(dlq["count"], 1, "{dlq}");
    let letter = &dlq["dead_letters"][0];
    assert_eq!(letter["id"], "odd-1");
    assert!(letter["error"].as_str().unwrap().contains("colour"), "the reason names the problem: {letter}");
    let (status, body) = post(&stack, "/admin/dlq/replay", json!({"id": "odd-1"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queued"], 0, "a value that cannot be decoded is never queued again: {body}");
    assert!(!stack.rows().await.contains_key("odd-1"));
}
