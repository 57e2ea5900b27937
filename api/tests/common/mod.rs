//! The API in-process against real Redis and PostgreSQL, driven with `oneshot` (no socket).
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, header},
};
use serde_json::Value;
use tower::ServiceExt;
use wbc_core::{
    StoreArgs,
    testkit::{ADMIN_TOKEN, PgServer, RedisServer, pipeline},
};

pub struct Api {
    pub redis: RedisServer,
    pub pg: PgServer,
    pub app: Router,
    pub state: wbc_api::AppState,
    pub ops: Arc<wbc_core::ops::Ops>,
}

impl Api {
    pub async fn start(flags: &[(&str, &str)]) -> Self {
        let redis = RedisServer::start();
        let pg = PgServer::start();
        let store = StoreArgs::new(redis.url(), pg.url());
        let (state, ops): (_, Arc<_>) = wbc_api::connect(&store, pipeline(flags)).await.expect("api connects");
        let access = wbc_api::Access::new(Some(ADMIN_TOKEN), None).expect("test token");
        let app = wbc_api::app(state.clone(), ops.clone(), &access, Duration::from_secs(30));
        Self { redis, pg, app, state, ops }
    }

    /// Another app on the same state and stores, with other tokens.
    pub fn app_with(&self, access: &wbc_api::Access) -> Router {
        wbc_api::app(self.state.clone(), self.ops.clone(), access, Duration::from_secs(30))
    }

    /// Sends one request; returns the status, the body parsed as JSON (or Null) and the headers.
    pub async fn send(&self, req: Request<Body>) -> (u16, Value, axum::http::HeaderMap) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
    }

    pub async fn call(&self, method: &str, uri: &str, body: Option<&str>) -> (u16, Value) {
        let (status, json, _) = self.send(json_request(method, uri, body)).await;
        (status, json)
    }

    /// Like `call`, with the answer's body as the text the API wrote.
    pub async fn call_text(&self, method: &str, uri: &str, body: Option<&str>) -> (u16, String) {
        let resp = self.app.clone().oneshot(json_request(method, uri, body)).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// Everything the products table holds, as text, in id order.
    pub async fn pg_snapshot(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT row_to_json(p)::text FROM products p ORDER BY id")
            .fetch_all(&self.state.pool)
            .await
            .unwrap()
    }

    /// Every Redis key with its type and contents, sorted.
    pub async fn redis_snapshot(&self) -> Vec<String> {
        let mut conn = self.redis().await;
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query_async(&mut conn).await.unwrap();
            out.push(format!("{key} {kind} {dump:?}"));
        }
        out
    }
}

/// A request with `body` as JSON, or without a body, carrying the admin token as every caller of
/// the admin endpoints does.
fn json_request(method: &str, uri: &str, body: Option<&str>) -> Request<Body> {
    let mut req =
        Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"));
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned()))).unwrap()
}
