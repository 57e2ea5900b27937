//! `/admin/queue` and `/admin/config`.
use axum::{Json, Router, extract::State, routing::get};
use wbc_core::{Pipeline, QueueStats};

use crate::{AppState, Result};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/queue", get(queue)).route("/admin/config", get(config))
}

async fn queue(State(state): State<AppState>) -> Result<Json<QueueStats>> {
    Ok(Json(state.store.queue_stats().await?))
}

async fn config(State(state): State<AppState>) -> Json<Pipeline> {
    Json(state.pipeline.as_ref().clone())
}
