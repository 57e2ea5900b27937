//! Leases: a worker keeps the batch it works on, however long its retries take, and settles it
//! exactly once.
mod common;

use std::time::Duration;

use common::{Stack, WorkerProc, product, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_record_whose_retries_outlast_the_lease_is_dead_lettered_once() {
    // Eight retries of 1 to 2 s take about 15 s, five times the 3 s lease: the worker must keep
    // its lease for as long as it works, or the reaper hands the batch to a fresh retry chain.
    let stack = Stack::start(&[
        ("flush-interval", "100ms"),
        ("lease-timeout", "3s"),
        ("max-retries", "8"),
        ("retry-initial-delay", "1s"),
        ("retry-max-delay", "2s"),
    ])
    .await;
    let worker = WorkerProc::spawn(
        &stack,
        "w1",
        &[("SIMULATE_DB_FAILURE", "true"), ("FAILURE_RATE", "1"), ("FAILURE_KIND", "permanent")],
    );
    let (status, body) = stack.put("poison-1", product("poison", 1)).await;
    assert_eq!(status, 200, "{body}");
    let parked = wait_until(Duration::from_secs(90), || async {
        let q = stack.queue().await;
        (q["dead_letters"] == 1 && q["in_flight"] == 0 && q["queue_size"] == 0).then_some(q)
    })
    .await;
    assert!(parked.is_some(), "the record was not dead-lettered and settled: {}", stack.queue().await);
    assert_eq!(worker.metric("wbc_worker_leases_reaped_total").await, Some(0.0), "{}", worker.log_text());
    assert_eq!(worker.metric(r#"wbc_worker_records_total{outcome="dead_lettered"}"#).await, Some(1.0));
    // Settled means settled: nothing comes back to retry it again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let q = stack.queue().await;
    assert_eq!((q["dead_letters"].as_u64(), q["in_flight"].as_u64()), (Some(1), Some(0)), "{q}");
    let retries = worker.metric(r#"wbc_worker_retries_total{class="permanent"}"#).await;
    assert_eq!(retries, Some(8.0), "one retry chain of MAX_RETRIES attempts");
}
