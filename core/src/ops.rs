//! `/healthz`, `/readyz` and `/metrics`, served alike by the API and the worker.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get};
use prometheus::{Encoder, Gauge, IntGauge, Registry, TextEncoder};
use serde_json::json;
use sqlx::PgPool;

use crate::{Store, db};

/// Gauges of the shared queue, refreshed from Redis on each scrape.
#[derive(Clone)]
pub struct QueueGauges {
    dirty_keys: IntGauge,
    in_flight_keys: IntGauge,
    dead_letters: IntGauge,
    oldest_age_seconds: Gauge,
}

impl QueueGauges {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let g = Self {
            dirty_keys: IntGauge::new("wbc_queue_dirty_keys", "Dirty keys waiting to be flushed")?,
            in_flight_keys: IntGauge::new(
                "wbc_queue_in_flight_keys",
                "Keys claimed by a worker and not yet acknowledged",
            )?,
            dead_letters: IntGauge::new("wbc_queue_dead_letters", "Records in the dead-letter list")?,
            oldest_age_seconds: Gauge::new(
                "wbc_queue_oldest_unpersisted_age_seconds",
                "Age of the oldest acknowledged write not yet in PostgreSQL (the data at risk)",
            )?,
        };
        registry.register(Box::new(g.dirty_keys.clone()))?;
        registry.register(Box::new(g.in_flight_keys.clone()))?;
        registry.register(Box::new(g.dead_letters.clone()))?;
        registry.register(Box::new(g.oldest_age_seconds.clone()))?;
        Ok(g)
    }

    async fn refresh(&self, store: &Store) {
        match store.queue_stats().await {
            Ok(s) => {
                self.dirty_keys.set(s.queue_size as i64);
                self.in_flight_keys.set(s.in_flight as i64);
                self.dead_letters.set(s.dead_letters as i64);
                self.oldest_age_seconds.set(s.oldest_unpersisted_age_ms.unwrap_or(0) as f64 / 1000.0);
            }
            Err(e) => tracing::warn!(error = %e, "queue gauges not refreshed"),
        }
    }
}

/// What the operational endpoints look at.
#[derive(Clone)]
pub struct Ops {
    pub registry: Registry,
    pub queue: QueueGauges,
    pub store: Store,
    pub pool: PgPool,
    /// Set once the process is shutting down: /readyz answers 503 so that traffic moves elsewhere.
    pub draining: Arc<AtomicBool>,
}

impl Ops {
    pub fn new(registry: Registry, queue: QueueGauges, store: Store, pool: PgPool) -> Self {
        Self { registry, queue, store, pool, draining: Arc::default() }
    }

    /// Marks the process as shutting down.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// The router of the operational endpoints.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// Ready while not draining and at least one store answers: with Redis alone writes and cached reads
/// are served, with PostgreSQL alone reads (and writes under a write-through policy); the body names
/// the state of each, and a 503 reply names the one that is down. It also carries the durable record
/// of the losses of Redis data (`data_loss`, null while PostgreSQL does not answer), which the
/// controller turns into events.
async fn readyz(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    let limit = Duration::from_secs(2);
    let postgres = async {
        db::ping(&ops.pool).await?;
        db::data_losses(&ops.pool).await
    };
    let (redis, postgres) =
        tokio::join!(tokio::time::timeout(limit, ops.store.ping()), tokio::time::timeout(limit, postgres));
    let data_loss = match &postgres {
        Ok(Ok(losses)) => Some(*losses),
        _ => None,
    };
    let draining = ops.draining.load(Ordering::Relaxed);
    let ready = !draining && (matches!(redis, Ok(Ok(()))) || matches!(postgres, Ok(Ok(_))));
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ready, "draining": draining, "redis": describe(&redis), "postgres": describe(&postgres),
        "data_loss": data_loss,
    });
    (status, Json(body))
}

/// "ok", the error, or "timed out".
fn describe<T, E>(r: &Result<crate::Result<T>, E>) -> String {
    match r {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    }
}

async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    ops.queue.refresh(&ops.store).await;
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&ops.registry.gather(), &mut buf) {
        tracing::error!(error = %e, "metrics encoding failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], Vec::new());
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buf)
}
