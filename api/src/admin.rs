//! `/admin/queue`, `/admin/config` and the dead-letter queue.
use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection},
    http::HeaderMap,
};
use serde::{Deserialize, Serialize};
use utoipa::{PartialSchema, ToSchema, openapi};
use utoipa_axum::{router::OpenApiRouter, routes};
use wbc_core::{
    DeadLetter, Pipeline, QueueStats, product,
    store::{Replayed, replay},
};

use crate::{
    ApiError, AppState, Result,
    openapi::{ConfigSchema, FailureSchema, QueueStatsSchema, RefusalSchema, ReplayedSchema, schemas},
    products::json_body,
};

/// Most dead letters one listing returns.
const MAX_LIST: usize = 10_000;
/// Dead letters a listing returns when it names no limit.
const DEFAULT_LIST: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(queue))
        .routes(routes!(config))
        .routes(routes!(dead_letters))
        .routes(routes!(replay_dead_letters))
}

/// The state of the write queue.
#[utoipa::path(get, path = "/admin/queue", operation_id = "queue", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The queue's size, keys in flight, dead letters, the age of the oldest unpersisted write", body = QueueStatsSchema),
        (status = 401, description = "No bearer token was sent", body = RefusalSchema),
        (status = 403, description = "The token is not ADMIN_TOKEN", body = RefusalSchema),
        (status = 408, description = "Not answered within REQUEST_TIMEOUT", body = RefusalSchema),
        (status = 503, description = "Redis is unavailable", body = FailureSchema),
    ))]
async fn queue(State(state): State<AppState>) -> Result<Json<QueueStats>> {
    Ok(Json(state.store.queue_stats().await?))
}

/// The effective configuration.
#[utoipa::path(get, path = "/admin/config", operation_id = "config", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every pipeline setting, as this process runs with it", body = ConfigSchema),
        (status = 401, description = "No bearer token was sent", body = RefusalSchema),
        (status = 403, description = "The token is not ADMIN_TOKEN", body = RefusalSchema),
        (status = 408, description = "Not answered within REQUEST_TIMEOUT", body = RefusalSchema),
    ))]
async fn config(State(state): State<AppState>) -> Json<Pipeline> {
    Json(state.pipeline.clone())
}

/// A listing of dead letters.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeadLetters {
    /// All dead letters, listed or not.
    #[schema(minimum = 0)]
    count: u64,
    /// The newest first.
    #[schema(schema_with = schemas::dead_letter_list)]
    dead_letters: Vec<DeadLetter>,
}

/// `limit`: how many dead letters a listing returns.
struct Limit;

impl PartialSchema for Limit {
    fn schema() -> openapi::RefOr<openapi::schema::Schema> {
        schemas::integer(1, MAX_LIST as i64).default(Some(DEFAULT_LIST.into())).into()
    }
}

/// The dead letters, newest first.
#[utoipa::path(get, path = "/admin/dlq", operation_id = "deadLetters", tag = "admin",
    params(("limit" = inline(Option<Limit>), Query, description = "How many to list; the only query parameter")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The dead letters and their count", body = DeadLetters),
        (status = 400, description = "A query parameter that is not limit, or a limit out of range", body = RefusalSchema),
        (status = 401, description = "No bearer token was sent", body = RefusalSchema),
        (status = 403, description = "The token is not ADMIN_TOKEN", body = RefusalSchema),
        (status = 408, description = "Not answered within REQUEST_TIMEOUT", body = RefusalSchema),
        (status = 503, description = "Redis is unavailable", body = FailureSchema),
    ))]
async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DeadLetters>> {
    let bad = |field: &str, reason: String| ApiError::Invalid { field: field.into(), reason };
    if let Some(unknown) = query.keys().find(|k| *k != "limit") {
        // a parameter without a name (`?=5`) is the query string's fault
        let field = if unknown.is_empty() { "query" } else { unknown };
        return Err(bad(field, "unknown query parameter; only limit is accepted".into()));
    }
    let limit = match query.get("limit") {
        None => DEFAULT_LIST,
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    /// Replays this key's dead letters only. Absent, not null, for all of them.
    #[schema(schema_with = schemas::id)]
    #[serde(default, deserialize_with = "present")]
    id: Option<String>,
}

/// A field that, when present, holds a value: `null` is refused, as the document says.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Puts dead letters back into the queue: all of them, or one key's.
#[utoipa::path(post, path = "/admin/dlq/replay", operation_id = "replayDeadLetters", tag = "admin",
    request_body(content = ReplayRequest, content_type = "application/json",
        description = "No body (or only whitespace) or {} replays every dead letter, {\"id\": …} one key's"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "How many were queued, dropped as superseded, and kept", body = ReplayedSchema),
        (status = 400, description = "The body is not such an object, or the id breaks its rule", body = RefusalSchema),
        (status = 401, description = "No bearer token was sent", body = RefusalSchema),
        (status = 403, description = "The token is not ADMIN_TOKEN", body = RefusalSchema),
        (status = 408, description = "Not answered within REQUEST_TIMEOUT", body = RefusalSchema),
        (status = 413, description = "The body is over 64 KiB", body = RefusalSchema),
        (status = 415, description = "A body that is not application/json", body = RefusalSchema),
        (status = 503, description = "Redis or PostgreSQL is unavailable", body = FailureSchema),
    ))]
async fn replay_dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Replayed>> {
    let request = match body {
        Ok(blank) if blank.iter().all(u8::is_ascii_whitespace) => ReplayRequest { id: None },
        body => product::parse_json(&json_body(&headers, body)?)?,
    };
    if let Some(id) = &request.id {
        product::validate_id(id)?;
    }
    let done = replay(&state.store, &state.pool, request.id.as_deref(), state.pipeline.queue_capacity).await?;
    tracing::info!(queued = done.queued, superseded = done.superseded, kept = done.kept, "dead letters replayed");
    Ok(Json(done))
}
