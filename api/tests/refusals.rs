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

/// A request with the admin token, so that only what the test varies is refused.
fn request(method: &str, uri: &str, content_type: Option<&str>, body: Body) -> Request<Body> {
    let bearer = format!("Bearer {}", wbc_core::testkit::ADMIN_TOKEN);
    let req = Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, bearer);
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
    let access = wbc_api::Access::new(Some(wbc_core::testkit::ADMIN_TOKEN), None).unwrap();
    api.app = wbc_api::app(api.state.clone(), api.ops.clone(), &access, Duration::from_millis(200));
    // A body that never ends: the handler waits for it until the timeout answers.
    let endless = Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>());
    let answer = api.send(request("POST", "/products", Some("application/json"), endless)).await;
    assert_refused("a body that never ends", (answer.0, answer.1), 408, "request");
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_naming_body() {
    let api = Api::start(&[]).await;
    // serde reads a struct from an array of its fields too; a product is an object with named fields.
    for body in [r#"["Widget", 1, 1]"#, "[null, null]", "[]", r#""Widget""#, "1", "null"] {
        assert_refused(body, api.call("PUT", "/products/seed-001", Some(body)).await, 400, "body");
        assert_refused(body, api.call("POST", "/products", Some(body)).await, 400, "body");
    }
    for body in [r#"["seed-001"]"#, "[]", "1"] {
        assert_refused(body, api.call("POST", "/admin/dlq/replay", Some(body)).await, 400, "body");
    }
    assert!(api.pg_snapshot().await.is_empty());
    assert_eq!(api.call("GET", "/products/seed-001", None).await.0, 404);
}

#[tokio::test]
async fn an_unknown_field_without_a_name_is_refused_naming_body() {
    let api = Api::start(&[]).await;
    let body = r#"{"": 1, "name": "a", "price": 1, "quantity": 1}"#;
    assert_refused("an empty field name", api.call("POST", "/products", Some(body)).await, 400, "body");
    let body = r#"{"": "seed-001"}"#;
    assert_refused("an empty field name", api.call("POST", "/admin/dlq/replay", Some(body)).await, 400, "body");
}

#[tokio::test]
async fn a_quantity_is_accepted_in_any_spelling_of_an_integer() {
    let api = Api::start(&[]).await;
    let put = |quantity: &str| format!(r#"{{"name": "a", "price": 1, "quantity": {quantity}}}"#);
    // JSON has one kind of number: 30648.0 is the integer 30648, as JSON Schema's `integer` says.
    for (spelling, want) in [("30648.0", 30648), ("3e2", 300), ("1E+2", 100), ("2.5e1", 25), ("-0", 0), ("0.0e5", 0)] {
        let (status, json) = api.call("PUT", "/products/q-1", Some(&put(spelling))).await;
        assert_eq!((status, &json["quantity"]), (200, &Value::from(want)), "{spelling}: {json}");
        assert_eq!(api.call("GET", "/products/q-1", None).await.1["quantity"], want, "{spelling}");
    }
    for spelling in ["1.5", "1e-1", "2147483648", "2.147483648e9", "-1", "-1.0", "1e400", "\"1\""] {
        assert_refused(spelling, api.call("PUT", "/products/q-2", Some(&put(spelling))).await, 400, "quantity");
    }
}

#[tokio::test]
async fn a_query_parameter_without_a_name_is_refused_naming_query() {
    let api = Api::start(&[]).await;
    for uri in ["/admin/dlq?=5", "/admin/dlq?limit=5&=x", "/admin/dlq?&="] {
        assert_refused(uri, api.call("GET", uri, None).await, 400, "query");
    }
    assert_refused("colour", api.call("GET", "/admin/dlq?colour=red", None).await, 400, "colour");
}

#[tokio::test]
async fn a_replay_names_an_id_or_none_and_null_is_refused_naming_id() {
    let api = Api::start(&[]).await;
    // `{}` or no body replays every dead letter; an id that is null is neither, and is refused.
    assert_refused("id null", api.call("POST", "/admin/dlq/replay", Some(r#"{"id": null}"#)).await, 400, "id");
    assert_refused("id 5", api.call("POST", "/admin/dlq/replay", Some(r#"{"id": 5}"#)).await, 400, "id");
    assert_eq!(api.call("POST", "/admin/dlq/replay", Some("{}")).await.0, 200);
    assert_eq!(api.call("POST", "/admin/dlq/replay", Some(r#"{"id": "seed-001"}"#)).await.0, 200);
}
