//! The HTTP API against real Redis and PostgreSQL.
mod common;

use axum::{body::Body, http::Request};
use common::Api;
use redis::AsyncCommands;
use serde_json::json;
use wbc_core::store::keys;

const WIDGET: &str = r#"{"name": "Test Widget", "price": 29.99, "quantity": 100}"#;

#[tokio::test]
async fn post_answers_201_at_once_from_the_cache_and_queues_the_key() {
    let api = Api::start(&[("flush-interval", "1h")]).await;
    let req = Request::post("/products").header("content-type", "application/json").body(Body::from(WIDGET)).unwrap();
    let (status, body, headers) = api.send(req).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/products/{id}"));
    assert_eq!(
        (body["name"].clone(), body["price"].clone(), body["quantity"].clone()),
        (json!("Test Widget"), json!(29.99), json!(100))
    );
    assert_eq!(body["source"], "cache");
    assert!(body["version"].as_i64().unwrap() > 0);
    assert!(api.pg_snapshot().await.is_empty(), "write-behind must not touch PostgreSQL");
    let (_, q) = api.call("GET", "/admin/queue", None).await;
    assert_eq!(q["queue_size"], 1);
    assert!(q["oldest_unpersisted_age_ms"].as_u64().is_some(), "{q}");
    let (status, got) = api.call("GET", &format!("/products/{id}"), None).await;
    assert_eq!((status, got["source"].as_str(), got["version"].clone()), (200, Some("cache"), body["version"].clone()));
}

#[tokio::test]
async fn a_cache_miss_reads_postgres_and_fills_the_cache() {
    let api = Api::start(&[("write-mode", "write-through")]).await;
    let (_, put) = api.call("PUT", "/products/p-1", Some(WIDGET)).await;
    let mut redis = api.redis().await;
    let _: () = redis.del(keys::product("p-1")).await.unwrap();
    let (status, body) = api.call("GET", "/products/p-1", None).await;
    assert_eq!((status, body["source"].as_str()), (200, Some("database")));
    assert_eq!(body["version"], put["version"]);
    let ttl: i64 = redis.pttl(keys::product("p-1")).await.unwrap();
    assert!(ttl > 0, "a clean cached value carries a TTL, got {ttl}");
    assert_eq!(api.call("GET", "/products/p-1", None).await.1["source"], "cache");
    assert_eq!(api.call("GET", "/products/absent", None).await.0, 404);
}

#[tokio::test]
async fn put_creates_or_replaces_and_delete_leaves_a_queued_tombstone() {
    let api = Api::start(&[("flush-interval", "1h")]).await;
    let (s1, a) = api.call("PUT", "/products/p-1", Some(WIDGET)).await;
    let (s2, b) = api.call("PUT", "/products/p-1", Some(r#"{"name":"Other","price":1,"quantity":0}"#)).await;
    assert_eq!((s1, s2), (200, 200));
    assert!(b["version"].as_i64() > a["version"].as_i64());
    assert_eq!(api.call("GET", "/products/p-1", None).await.1["name"], "Other");
    let (status, del) = api.call("DELETE", "/products/p-1", None).await;
    assert_eq!((status, del["deleted"].clone()), (200, json!(true)));
    assert!(del["version"].as_i64() > b["version"].as_i64());
    assert_eq!(api.call("GET", "/products/p-1", None).await.0, 404);
    let mut redis = api.redis().await;
    let dirty: Vec<String> = redis.zrange(keys::DIRTY, 0, -1).await.unwrap();
    assert_eq!(dirty, vec!["p-1".to_owned()], "three writes to one key are one dirty entry");
    let ttl: i64 = redis.pttl(keys::product("p-1")).await.unwrap();
    assert_eq!(ttl, -1, "a dirty value never carries a TTL");
}

#[tokio::test]
async fn write_through_commits_to_postgres_before_answering() {
    let api = Api::start(&[("write-behind-enabled", "false")]).await;
    let (status, body) = api.call("POST", "/products", Some(WIDGET)).await;
    assert_eq!((status, body["source"].as_str()), (201, Some("database")));
    let rows = api.pg_snapshot().await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].contains("Test Widget") && rows[0].contains(&body["version"].to_string()), "{rows:?}");
    assert_eq!(api.call("GET", "/admin/queue", None).await.1["queue_size"], 0);
    assert_eq!(api.call("GET", "/admin/config", None).await.1["mode"], "write-through");
}

#[tokio::test]
async fn each_bad_request_gets_a_4xx_that_names_the_field() {
    let api = Api::start(&[]).await;
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("POST", "/products", Some("{not json"), 400, "body"),
        ("POST", "/products", Some(r#"{"name":"a","price":1,"quantity":1,"sku":"x"}"#), 400, "sku"),
        ("POST", "/products", Some(r#"{"price":1,"quantity":1}"#), 400, "name"),
        ("POST", "/products", Some(r#"{"name":"","price":1,"quantity":1}"#), 400, "name"),
        (
            "POST",
            "/products",
            Some(&format!(r#"{{"name":"{}","price":1,"quantity":1}}"#, "n".repeat(201))),
            400,
            "name",
        ),
        ("POST", "/products", Some(r#"{"name":"a","price":-0.01,"quantity":1}"#), 400, "price"),
        ("POST", "/products", Some(r#"{"name":"a","price":1e999,"quantity":1}"#), 400, "price"),
        ("POST", "/products", Some(r#"{"name":"a","price":1,"quantity":-1}"#), 400, "quantity"),
        ("POST", "/products", Some(r#"{"name":"a","price":1,"quantity":0.5}"#), 400, "quantity"),
        ("PUT", "/products/bad%20id", Some(WIDGET), 400, "id"),
        ("PUT", &format!("/products/{}", "x".repeat(65)), Some(WIDGET), 400, "id"),
        ("GET", "/products/..", None, 400, "id"),
        ("DELETE", "/products/-x", None, 400, "id"),
    ];
    for (method, uri, body, want, field) in cases {
        let (status, json) = api.call(method, uri, *body).await;
        assert_eq!(status, *want, "{method} {uri} {body:?}: {json}");
        assert_eq!(json["field"], *field, "{method} {uri} {body:?}: {json}");
        assert!(json["error"].as_str().unwrap().starts_with(field), "{json}");
    }
    let big = format!(r#"{{"name":"{}","price":1,"quantity":1}}"#, "n".repeat(70_000));
    let (status, json) = api.call("POST", "/products", Some(&big)).await;
    assert_eq!(status, 413, "{json}");
    let req = Request::post("/products").header("content-type", "text/plain").body(Body::from(WIDGET)).unwrap();
    assert_eq!(api.send(req).await.0, 415);
    assert!(api.pg_snapshot().await.is_empty());
    assert_eq!(api.call("GET", "/admin/queue", None).await.1["queue_size"], 0);
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let mut api = Api::start(&[]).await;
    api.call("POST", "/products", Some(WIDGET)).await;
    api.call("POST", "/products", Some("{}")).await;
    assert_eq!(api.call("GET", "/healthz", None).await.0, 200);
    let no_loss = json!({"count": 0, "last_detected_at_ms": null, "at_least_writes": 0});
    let ok = json!({"ready": true, "draining": false, "redis": "ok", "postgres": "ok", "data_loss": no_loss});
    assert_eq!(api.call("GET", "/readyz", None).await, (200, ok));
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let resp = tower::ServiceExt::oneshot(api.app.clone(), req).await.unwrap();
    let text = String::from_utf8(axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    for series in [
        "wbc_queue_dirty_keys 1",
        r#"wbc_writes_total{mode="write-behind",op="upsert"} 1"#,
        r#"wbc_writes_rejected_total{reason="validation"} 1"#,
        r#"wbc_mode_info{mode="write-behind"} 1"#,
        r#"wbc_http_request_duration_seconds_count{method="POST",route="/products",status="201"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == series), "missing {series} in\n{text}");
    }
    api.redis.kill9();
    let (status, body) = api.call("GET", "/readyz", None).await;
    assert_eq!((status, body["ready"].clone()), (200, json!(true)), "reads still come from PostgreSQL: {body}");
    assert_ne!(body["redis"], "ok", "{body}");
    let (status, body) = api.call("POST", "/products", Some(WIDGET)).await;
    assert_eq!(status, 503, "a write without Redis is refused, not lost: {body}");
    api.pg.stop();
    let (status, body) = api.call("GET", "/readyz", None).await;
    assert_eq!((status, body["ready"].clone()), (503, json!(false)), "{body}");
    assert_ne!(body["postgres"], "ok", "{body}");
    assert_eq!(body["data_loss"], json!(null), "the record of losses is unknown without PostgreSQL: {body}");
}

#[tokio::test]
async fn a_draining_api_is_unready_but_still_serves() {
    let api = Api::start(&[]).await;
    api.ops.drain();
    let (status, body) = api.call("GET", "/readyz", None).await;
    assert_eq!((status, body["draining"].clone()), (503, json!(true)), "{body}");
    let req = Request::post("/products").header("content-type", "application/json").body(Body::from(WIDGET)).unwrap();
    let (status, _, headers) = api.send(req).await;
    assert_eq!(status, 201, "requests in the delay are served");
    assert_eq!(headers["connection"], "close", "and their clients move to another pod");
}

#[tokio::test]
async fn a_body_with_characters_after_its_json_value_is_refused_naming_body() {
    let api = Api::start(&[]).await;
    for body in [format!("{WIDGET} trailing"), format!("{WIDGET}{WIDGET}"), format!("{WIDGET} 1"), format!("{WIDGET}]")]
    {
        for (method, uri) in [("POST", "/products"), ("PUT", "/products/p-1")] {
            let (status, json) = api.call(method, uri, Some(&body)).await;
            assert_eq!((status, json["field"].as_str()), (400, Some("body")), "{method} {body}: {json}");
        }
    }
    assert_eq!(api.call("GET", "/admin/queue", None).await.1["queue_size"], 0, "nothing was written");
    let (status, json) = api.call("PUT", "/products/p-1", Some(&format!("\n{WIDGET} \r\n\t"))).await;
    assert_eq!(status, 200, "whitespace around the value is JSON: {json}");
}

#[tokio::test]
async fn every_spelling_of_a_price_is_answered_and_cached_with_exactly_two_decimals() {
    let api = Api::start(&[("flush-interval", "1h")]).await;
    let cases = [
        ("-0.0", "0.00"),
        ("-0", "0.00"),
        ("0e-7", "0.00"),
        ("1e2", "100.00"),
        ("29.9", "29.90"),
        ("2990E-2", "29.90"),
        ("0.299e+2", "29.90"),
        ("1.10000", "1.10"),
        ("9999999999.99", "9999999999.99"),
    ];
    for (i, (spelled, want)) in cases.into_iter().enumerate() {
        let uri = format!("/products/p-{i}");
        let body = format!(r#"{{"name":"a","price":{spelled},"quantity":1}}"#);
        let (status, answer) = api.call_text("PUT", &uri, Some(&body)).await;
        assert_eq!(status, 200, "{spelled}: {answer}");
        assert!(answer.contains(&format!(r#""price":{want},"#)), "{spelled} answered {answer}, not {want}");
        let (_, cached) = api.call_text("GET", &uri, None).await;
        assert!(cached.contains(&format!(r#""price":{want},"#)), "{spelled} cached as {cached}, not {want}");
    }
}
