//! Metrics as a person sees them: `promtool check metrics` accepts the exposition, every metric
//! moves when its event happens, and a real Prometheus scraping the stack under load returns data
//! for every query of the dashboard.
mod common;

use std::time::Duration;

use common::{Stack, WorkerProc, metric_value, product};
use serde_json::Value;
use wbc_core::testkit::PrometheusServer;

const DASHBOARD: &str = include_str!("../../observability/grafana/wbc.json");

async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Runs `promtool check metrics` on an exposition; returns its complaints.
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (install the prometheus package)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Sums a series over several expositions (one per worker).
fn total(texts: &[String], series: &str) -> f64 {
    texts.iter().filter_map(|t| metric_value(t, series)).sum()
}

async fn load(stack: &Stack, round: usize) {
    for i in 0..20 {
        stack.put(&format!("hot-{}", i % 5), product("hot", (round * 20 + i) as i64)).await;
        stack.get_json(&format!("/products/hot-{}", i % 5)).await;
    }
    stack.get_json(&format!("/products/missing-{round}")).await;
    stack.put("bad id", product("x", 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_moves_and_every_dashboard_query_returns_data() {
    let stack = Stack::start(&[
        ("flush-interval", "200ms"),
        ("queue-capacity", "40"),
        ("max-retries", "1"),
        ("retry-initial-delay", "10ms"),
    ])
    .await;
    stack.refuse_poison().await;
    let w1 = stack.spawn_worker("w1");
    let w2 = WorkerProc::spawn(&stack, "w2", &[("SIMULATE_DB_FAILURE", "true"), ("FAILURE_RATE", "0.3")]);
    w1.ready().await;
    w2.ready().await;
    let api_metrics = format!("{}/metrics", stack.api);
    let workers = [&w1, &w2];
    let before: Vec<String> = futures_scrape(&api_metrics, &workers).await;

    let target = |u: &str| u.trim_start_matches("http://").trim_end_matches("/metrics").to_owned();
    let prometheus = PrometheusServer::start(&format!(
        "  - job_name: wbc-api\n    static_configs: [{{targets: ['{}']}}]\n  - job_name: wbc-worker\n    static_configs: [{{targets: ['{}', '{}']}}]\n",
        target(&api_metrics),
        target(&w1.metrics_url),
        target(&w2.metrics_url)
    ));

    let mut mid_load = None;
    for round in 0..12 {
        load(&stack, round).await;
        match round {
            9 => {
                stack.put("poison-1", product("poison", 1)).await;
            }
            5 => {
                // More new keys than the queue holds: some are refused as overflow.
                for i in 0..60 {
                    stack.put(&format!("burst-{round}-{i}"), product("burst", i)).await;
                }
                mid_load = Some(scrape(&api_metrics).await);
            }
            8 => {
                let _: () = redis::cmd("FLUSHALL").query_async(&mut stack.redis().await).await.unwrap();
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    stack.drained(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // two more scrapes

    // Prometheus answers every dashboard query with data.
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .collect();
    let http = reqwest::Client::new();
    let mut empty = Vec::new();
    for expr in &exprs {
        let r: Value = http
            .get(format!("{}/api/v1/query", prometheus.url()))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "success", "{expr}: {r}");
        if r["data"]["result"].as_array().is_none_or(|a| a.is_empty()) {
            empty.push(expr.clone());
        }
    }
    assert!(empty.is_empty(), "dashboard queries without data: {empty:#?}");

    // Each metric moved with its event (a worker's last events may reach its counters a moment
    // after the queue drained), and the exposition passes promtool.
    let series = [
        r#"wbc_writes_total{mode="write-behind",op="upsert"}"#,
        "wbc_writes_coalesced_total",
        "wbc_cache_hits_total",
        "wbc_cache_misses_total",
        r#"wbc_writes_rejected_total{reason="validation"}"#,
        r#"wbc_writes_rejected_total{reason="overflow"}"#,
        r#"wbc_http_request_duration_seconds_count{method="PUT",route="/products/{id}",status="200"}"#,
        "wbc_worker_rows_persisted_total",
        r#"wbc_worker_batches_total{result="ok"}"#,
        "wbc_worker_batch_size_count",
        "wbc_worker_flush_duration_seconds_count",
        "wbc_worker_persistence_lag_seconds_count",
        r#"wbc_worker_retries_total{class="transient"}"#,
        r#"wbc_worker_retries_total{class="permanent"}"#,
        r#"wbc_worker_records_total{outcome="dead_lettered"}"#,
        r#"wbc_worker_records_total{outcome="first_try"}"#,
        "wbc_data_loss_detected_total",
    ];
    let unmoved = |after: &[String]| -> Vec<&str> {
        series.iter().filter(|s| total(after, s) <= total(&before, s)).copied().collect()
    };
    let mut after = futures_scrape(&api_metrics, &workers).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !unmoved(&after).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = futures_scrape(&api_metrics, &workers).await;
    }
    for text in &after {
        let (ok, complaints) = promtool_check(text);
        assert!(ok && complaints.trim().is_empty(), "promtool check metrics: {complaints}");
    }
    let still = unmoved(&after);
    assert!(still.is_empty(), "metrics that did not move: {still:?}");
    let mid = mid_load.unwrap();
    assert!(metric_value(&mid, "wbc_queue_dirty_keys").unwrap() > 0.0);
    assert!(metric_value(&mid, "wbc_queue_oldest_unpersisted_age_seconds").unwrap() > 0.0);
    assert_eq!(metric_value(&after[0], "wbc_queue_dead_letters"), Some(1.0));
    assert_eq!(metric_value(&after[0], r#"wbc_mode_info{mode="write-behind"}"#), Some(1.0));

    // Redis down: the write is refused and counted as such.
    let mut stack = stack;
    stack.redis.kill9();
    assert_eq!(stack.put("late", product("late", 1)).await.0, 503);
    let text = scrape(&api_metrics).await;
    assert_eq!(metric_value(&text, r#"wbc_writes_rejected_total{reason="redis_down"}"#), Some(1.0));
}

async fn futures_scrape(api: &str, workers: &[&WorkerProc]) -> Vec<String> {
    let mut out = vec![scrape(api).await];
    for w in workers {
        out.push(scrape(&w.metrics_url).await);
    }
    out
}
