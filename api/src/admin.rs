//! `/admin/queue`, `/admin/config` and the dead-letter queue.
use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use wbc_core::{
    DeadLetter, Pipeline, QueueStats, product,
    store::{Replayed, replay},
};

use crate::{ApiError, AppState, Result};

/// Most dead letters one listing returns.
const MAX_LIST: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/queue", get(queue))
        .route("/admin/config", get(config))
        .route("/admin/dlq", get(dead_letters))
        .route("/admin/dlq/replay", post(replay_dead_letters))
}

async fn queue(State(state): State<AppState>) -> Result<Json<QueueStats>> {
    Ok(Json(state.store.queue_stats().await?))
}

async fn config(State(state): State<AppState>) -> Json<Pipeline> {
    Json(state.pipeline.clone())
}

#[derive(Serialize)]
struct DeadLetters {
    /// All dead letters, listed or not.
    count: u64,
    dead_letters: Vec<DeadLetter>,
}

async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DeadLetters>> {
    let bad = |field: &str, reason: String| ApiError::Invalid { field: field.into(), reason };
    if let Some(unknown) = query.keys().find(|k| *k != "limit") {
        return Err(bad(unknown, "unknown query parameter; only limit is accepted".into()));
    }
    let limit = match query.get("limit") {
        None => 100,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIST).contains(l))
            .ok_or_else(|| bad("limit", format!("must be an integer from 1 to {MAX_LIST}")))?,
    };
    let dead_letters: Vec<DeadLetter> =
        state.store.dead_letters(Some(limit)).await?.into_iter().map(|(_, l)| l).collect();
    let count = state.store.queue_stats().await?.dead_letters;
    Ok(Json(DeadLetters { count, dead_letters }))
}

/// The optional body of a replay: one key's dead letters, or all of them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    id: Option<String>,
}

async fn replay_dead_letters(State(state): State<AppState>, body: Bytes) -> Result<Json<Replayed>> {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest { id: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::Invalid { field: "body".into(), reason: e.to_string() })?
    };
    if let Some(id) = &request.id {
        product::validate_id(id)?;
    }
    let done = replay(&state.store, &state.pool, request.id.as_deref(), state.pipeline.queue_capacity).await?;
    tracing::info!(queued = done.queued, superseded = done.superseded, kept = done.kept, "dead letters replayed");
    Ok(Json(done))
}
