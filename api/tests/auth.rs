//! Bearer tokens on `/admin/*` and, when one is set, on the product routes; the operational
//! endpoints stay open. Against real Redis and PostgreSQL, through `oneshot`.
mod common;

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{HeaderMap, Request, header},
};
use common::Api;
use serde_json::Value;
use tower::ServiceExt;
use wbc_api::Access;
use wbc_core::testkit::ADMIN_TOKEN;

const PRODUCTS_TOKEN: &str = "products-token-abcdefghijklmnop";
const WIDGET: &str = r#"{"name": "Widget", "price": 1.5, "quantity": 2}"#;
const ADMIN_ROUTES: [(&str, &str); 4] =
    [("GET", "/admin/queue"), ("GET", "/admin/config"), ("GET", "/admin/dlq"), ("POST", "/admin/dlq/replay")];

/// Sends `method uri` with `authorization` as the header (none if `None`); returns the status, the
/// JSON body and the headers.
async fn send(app: &Router, method: &str, uri: &str, authorization: Option<&str>) -> (u16, Value, HeaderMap) {
    let mut req = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(value) = authorization {
        req = req.header(header::AUTHORIZATION, value);
    }
    let body = if matches!(method, "POST" | "PUT") && uri.starts_with("/products") { WIDGET } else { "" };
    let resp = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
}

/// `wbc_api_auth_failures_total{scope, reason}` as `/metrics` shows it, which needs no token.
async fn failures(app: &Router, scope: &str, reason: &str) -> f64 {
    let resp = app.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200, "/metrics needs no token");
    let text = String::from_utf8(to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("wbc_api_auth_failures_total{")
                && l.contains(&format!("scope=\"{scope}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .unwrap_or_else(|| panic!("no series for {scope}/{reason} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn every_admin_route_answers_401_without_a_token_403_with_a_wrong_one_and_200_with_the_right_one() {
    let api = Api::start(&[("flush-interval", "1h")]).await;
    let app = &api.app;
    for (method, uri) in ADMIN_ROUTES {
        let (status, body, headers) = send(app, method, uri, None).await;
        assert_eq!(status, 401, "{method} {uri}: {body}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer", "{method} {uri}");
        assert_eq!(body["field"], "authorization", "{body}");
        assert!(body["error"].as_str().unwrap().contains("Authorization: Bearer <ADMIN_TOKEN>"), "{body}");
        for malformed in ["Basic YWRtaW46YWRtaW4=", ADMIN_TOKEN, "Bearer "] {
            let (status, body, headers) = send(app, method, uri, Some(malformed)).await;
            assert_eq!((status, body["field"].as_str()), (401, Some("authorization")), "{malformed}: {body}");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        }
        for wrong in [&bearer("wbc-test-admin-token-012345678"), &bearer(&format!("{ADMIN_TOKEN}0")), "Bearer x"] {
            let (status, body, headers) = send(app, method, uri, Some(wrong)).await;
            assert_eq!(status, 403, "{method} {uri} with {wrong}: {body}");
            assert_eq!(body["error"], "authorization: the bearer token is not ADMIN_TOKEN");
            assert!(!headers.contains_key(header::WWW_AUTHENTICATE));
        }
        let (status, body, _) = send(app, method, uri, Some(&format!("bearer  {ADMIN_TOKEN}"))).await;
        assert_eq!(status, 200, "{method} {uri}: {body}");
    }
    assert_eq!(failures(app, "admin", "missing").await, 4.0);
    assert_eq!(failures(app, "admin", "malformed").await, 12.0);
    assert_eq!(failures(app, "admin", "wrong").await, 12.0);
    assert_eq!(failures(app, "admin", "disabled").await, 0.0);
    assert_eq!(failures(app, "products", "missing").await, 0.0);
}

#[tokio::test]
async fn health_readiness_metrics_and_products_stay_open_without_a_products_token() {
    let api = Api::start(&[("flush-interval", "1h")]).await;
    for uri in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(send(&api.app, "GET", uri, None).await.0, 200, "{uri}");
        assert_eq!(send(&api.app, "GET", uri, Some("Bearer wrong")).await.0, 200, "{uri} ignores a token");
    }
    let (status, created, _) = send(&api.app, "POST", "/products", None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(send(&api.app, "GET", &format!("/products/{id}"), None).await.0, 200);
    assert_eq!(send(&api.app, "PUT", &format!("/products/{id}"), None).await.0, 200);
    assert_eq!(send(&api.app, "DELETE", &format!("/products/{id}"), None).await.0, 200);
}

#[tokio::test]
async fn without_an_admin_token_the_admin_routes_are_disabled_and_say_so() {
    let api = Api::start(&[]).await;
    let app = api.app_with(&Access::default());
    for (method, uri) in ADMIN_ROUTES {
        for authorization in [None, Some(bearer(ADMIN_TOKEN).as_str())] {
            let (status, body, _) = send(&app, method, uri, authorization).await;
            assert_eq!(status, 403, "{method} {uri}: {body}");
            assert!(body["error"].as_str().unwrap().contains("no ADMIN_TOKEN"), "{body}");
        }
    }
    assert_eq!(failures(&app, "admin", "disabled").await, 8.0);
    assert_eq!(send(&app, "POST", "/products", None).await.0, 201, "products stay open");
}

#[tokio::test]
async fn a_products_token_guards_every_product_route_and_only_that_token_opens_them() {
    let api = Api::start(&[("flush-interval", "1h")]).await;
    let app = api.app_with(&Access::new(Some(ADMIN_TOKEN), Some(PRODUCTS_TOKEN)).unwrap());
    let token = bearer(PRODUCTS_TOKEN);
    let (status, created, _) = send(&app, "POST", "/products", Some(&token)).await;
    assert_eq!(status, 201, "{created}");
    let one = format!("/products/{}", created["id"].as_str().unwrap());
    let routes = [("POST", "/products"), ("GET", one.as_str()), ("PUT", one.as_str()), ("DELETE", one.as_str())];
    for (method, uri) in routes {
        let (status, body, headers) = send(&app, method, uri, None).await;
        assert_eq!((status, &headers[header::WWW_AUTHENTICATE]), (401, &"Bearer".parse().unwrap()), "{body}");
        assert!(body["error"].as_str().unwrap().contains("<PRODUCTS_TOKEN>"), "{body}");
        let (status, body, _) = send(&app, method, uri, Some(&bearer(ADMIN_TOKEN))).await;
        assert_eq!(status, 403, "the admin token does not open {method} {uri}: {body}");
    }
    for (method, uri) in routes.into_iter().rev() {
        let (status, body, _) = send(&app, method, uri, Some(&token)).await;
        assert!((200..300).contains(&status), "{method} {uri}: {status} {body}");
    }
    assert_eq!(send(&app, "GET", "/admin/queue", Some(&token)).await.0, 403, "nor the other way round");
    assert_eq!(send(&app, "GET", "/admin/queue", Some(&bearer(ADMIN_TOKEN))).await.0, 200);
    assert_eq!(send(&app, "GET", "/healthz", None).await.0, 200);
    assert_eq!(failures(&app, "products", "missing").await, 4.0);
    assert_eq!(failures(&app, "products", "wrong").await, 4.0);
    assert_eq!(failures(&app, "admin", "wrong").await, 1.0);
}
