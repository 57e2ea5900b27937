//! Every refused request (4xx) answers the JSON error body `{"error", "field"}` naming what it
//! refuses: the contract's fuzzer checks this of every answer, these tests pin each kind of refusal.
mod common;

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, header},
};
use common::Api;
use serde_json::Value;

const WIDGET: &str = r#"{"name": "Test Widget", "price": 29.99, "quantity": 100}"#;

/// Asserts that an answer is a refusal with `status` naming `field`, its message starting with it.
fn assert_refused(what: &str, (status, json): (u16, Value), want: u16, field: &str) {
    assert_eq!(status, want, "{what}: {json}");
    assert_eq!(json["field"], field, "{what}: {json}");
    let error = json["error"].as_str().unwrap_or_else(|| panic!("{what}: no error in {json}"));
    assert!(error.starts_with(&format!("{field}: ")), "{what}: {json}");
}

fn request(method: &str, uri: &str, content_type: Option<&str>, body: Body) -> Request<Body> {
    let req = Request::builder().method(method).uri(uri);
    let req = match content_type {
        Some(ct) => req.header(header::CONTENT_TYPE, ct),
        None => req,
    };
    req.body(body).unwrap()
}

#[tokio::test]
async fn refusals_of_the_body_name_body_or_content_type() {
    let api = Api::start(&[]).await;
    let big = format!(r#"{{"name":"{}","price":1,"quantity":1}}"#, "n".repeat(70_000));
    for (uri, method) in [("/products", "POST"), ("/products/seed-001", "PUT"), ("/admin/dlq/replay", "POST")] {
        let answer = api.send(request(method, uri, Some("application/json"), Body::from(big.clone()))).await;
        assert_refused(&format!("{method} {uri} 70 kB"), (answer.0, answer.1), 413, "body");
        let answer = api.send(request(method, uri, Some("text/plain"), Body::from(WIDGET))).await;
        assert_refused(&format!("{method} {uri} text/plain"), (answer.0, answer.1), 415, "content-type");
    }
    let answer = api.send(request("POST", "/products", None, Body::from(WIDGET))).await;
    assert_refused("POST without a content type", (answer.0, answer.1), 415, "content-type");
    assert!(api.pg_snapshot().await.is_empty());
}

#[tokio::test]
async fn a_product_or_a_route_that_does_not_exist_is_named() {
    let api = Api::start(&[]).await;
    assert_refused("absent product", api.call("GET", "/products/absent-1", None).await, 404, "id");
    api.call("PUT", "/products/gone-1", Some(WIDGET)).await;
    api.call("DELETE", "/products/gone-1", None).await;
    assert_refused("deleted product", api.call("GET", "/products/gone-1", None).await, 404, "id");
    assert_refused("no such route", api.call("GET", "/nowhere", None).await, 404, "path");
    assert_refused("no id", api.call("GET", "/products/", None).await, 404, "path");
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_refused_naming_method_with_allow() {
    let api = Api::start(&[]).await;
    for (method, uri, allow) in [
        ("PATCH", "/products/seed-001", "GET,HEAD,PUT,DELETE"),
        ("GET", "/products", "POST"),
        ("DELETE", "/admin/queue", "GET,HEAD"),
        ("GET", "/admin/dlq/replay", "POST"),
    ] {
        let (status, json, headers) = api.send(request(method, uri, None, Body::empty())).await;
        assert_refused(&format!("{method} {uri}"), (status, json), 405, "method");
        assert_eq!(headers[header::ALLOW], allow, "{method} {uri}");
    }
}

#[tokio::test]
async fn an_id_that_is_not_utf8_is_refused_naming_id() {
    let api = Api::start(&[]).await;
    for method in ["GET", "PUT", "DELETE"] {
        let answer = api.send(request(method, "/products/a%FFb", Some("application/json"), Body::from(WIDGET))).await;
        assert_refused(&format!("{method} /products/a%FFb"), (answer.0, answer.1), 400, "id");
    }
}

#[tokio::test]
async fn a_request_not_answered_in_time_is_refused_naming_request() {
    let mut api = Api::start(&[]).await;
    api.app = wbc_api::app(api.state.clone(), api.ops.clone(), Duration::from_millis(200));
    // A body that never ends: the handler waits for it until the timeout answers.
    let endless = Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>());
    let answer = api.send(request("POST", "/products", Some("application/json"), endless)).await;
    assert_refused("a body that never ends", (answer.0, answer.1), 408, "request");
}
