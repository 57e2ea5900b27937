//! `/products`: writes queued in Redis (or written through), reads from Redis then PostgreSQL.
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use serde::Serialize;
use tracing::Instrument;
use wbc_core::{OverflowPolicy, ProductInput, Record, RedisDownPolicy, WriteMode, db, product};

use crate::{ApiError, AppState, MAX_BODY_BYTES, Result, mode_label};

pub fn router() -> Router<AppState> {
    Router::new().route("/products", post(create)).route("/products/{id}", get(read).put(replace).delete(remove))
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    Cache,
    Database,
}

#[derive(Serialize)]
struct ProductBody {
    id: String,
    name: String,
    price: f64,
    quantity: i64,
    version: i64,
    source: Source,
}

#[derive(Serialize)]
struct DeletedBody {
    id: String,
    version: i64,
    deleted: bool,
    source: Source,
}

impl ProductBody {
    fn new(r: Record, source: Source) -> Self {
        Self { id: r.id, name: r.name, price: r.price, quantity: r.quantity, version: r.version, source }
    }
}

async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse> {
    let input = guarded(&s, parse_body(&headers, body))?;
    let id = product::new_id();
    // A fresh random id: PostgreSQL holds no version for it.
    let (record, source) = write(&s, &id, Some(input), Some(0)).await?;
    let location = format!("/products/{id}");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(ProductBody::new(record, source))))
}

async fn replace(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ProductBody>> {
    guarded(&s, product::validate_id(&id).map_err(ApiError::from))?;
    let input = guarded(&s, parse_body(&headers, body))?;
    let (record, source) = write(&s, &id, Some(input), None).await?;
    Ok(Json(ProductBody::new(record, source)))
}

async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<DeletedBody>> {
    guarded(&s, product::validate_id(&id).map_err(ApiError::from))?;
    let (record, source) = write(&s, &id, None, None).await?;
    Ok(Json(DeletedBody { id: record.id, version: record.version, deleted: true, source }))
}

async fn read(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<ProductBody>> {
    product::validate_id(&id)?;
    let cached = match s.fences.apply(&s.store, &s.pool, s.pipeline.cache_ttl).await {
        Ok(()) => s.store.get(&id).await,
        Err(e) => Err(e),
    };
    match &cached {
        Ok(Some(record)) => {
            s.metrics.cache_hits.inc();
            return live(record.clone(), Source::Cache);
        }
        Ok(None) => {}
        // Reads keep working from PostgreSQL while Redis is down.
        Err(e) => tracing::warn!(error = %e, %id, "redis unavailable; reading from PostgreSQL"),
    }
    s.metrics.cache_misses.inc();
    let Some(record) = db::get(&s.pool, &id).await? else {
        return Err(ApiError::NotFound(id));
    };
    // Refill the cache; a failure here only costs the next read another miss. Not when Redis
    // failed: it may still hold values older than PostgreSQL's that this process has not fenced.
    if cached.is_ok() {
        if let Err(e) = s.store.set_clean(&record, s.pipeline.cache_ttl).await {
            tracing::warn!(error = %e, %id, "cache refill failed");
        }
    }
    live(record, Source::Database)
}

fn live(record: Record, source: Source) -> Result<Json<ProductBody>> {
    if record.deleted {
        return Err(ApiError::NotFound(record.id));
    }
    Ok(Json(ProductBody::new(record, source)))
}

/// Counts a refused write before passing the error on.
fn guarded<T>(s: &AppState, r: Result<T>) -> Result<T> {
    r.inspect_err(|e| s.metrics.writes_rejected.with_label_values(&[e.reject_reason()]).inc())
}

fn parse_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<ProductInput> {
    let json =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(
            |v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.to_ascii_lowercase().ends_with("+json")
            },
        );
    if !json {
        return Err(ApiError::NotJson);
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: MAX_BODY_BYTES },
        _ => ApiError::Invalid { field: "body".into(), reason: e.body_text() },
    })?;
    Ok(product::parse_input(&body)?)
}

/// Applies a write (a product, or a tombstone for `None`) in the configured mode. `persisted` is
/// the version PostgreSQL holds for the key, where the caller knows it.
async fn write(
    s: &AppState,
    id: &str,
    input: Option<ProductInput>,
    persisted: Option<i64>,
) -> Result<(Record, Source)> {
    let op = if input.is_some() { "upsert" } else { "delete" };
    if s.pipeline.mode == WriteMode::WriteBehind {
        match queue(s, id, input.as_ref(), persisted).await {
            Ok(queued) => {
                wbc_core::failpoint!("api::after_redis_write");
                if queued.coalesced {
                    s.metrics.writes_coalesced.inc();
                }
                s.metrics.writes.with_label_values(&[mode_label(WriteMode::WriteBehind), op]).inc();
                return Ok((record(id, input, queued.version), Source::Cache));
            }
            Err(wbc_core::Error::QueueFull { capacity }) if s.pipeline.overflow_policy == OverflowPolicy::Reject => {
                let retry_after_secs = s.pipeline.flush_interval.as_secs().max(1);
                return guarded(s, Err(ApiError::QueueFull { capacity, retry_after_secs }));
            }
            // The overflow policy sends this write through to PostgreSQL.
            Err(wbc_core::Error::QueueFull { .. }) => {}
            Err(wbc_core::Error::Redis(e)) if s.pipeline.redis_down_policy == RedisDownPolicy::WriteThrough => {
                tracing::warn!(error = %e, %id, "redis unavailable; PostgreSQL issues the version");
                let record = guarded(s, without_redis(s, id, input).await)?;
                s.metrics.writes.with_label_values(&[mode_label(WriteMode::WriteThrough), op]).inc();
                return Ok((record, Source::Database));
            }
            Err(e) => return guarded(s, Err(e.into())),
        }
    }
    let record = guarded(s, write_through(s, id, input).await)?;
    s.metrics.writes.with_label_values(&[mode_label(WriteMode::WriteThrough), op]).inc();
    Ok((record, Source::Database))
}

/// Queues a write in Redis, once Redis knows every version this process wrote without it. A key
/// Redis no longer remembers is versioned above the row PostgreSQL holds for it.
async fn queue(
    s: &AppState,
    id: &str,
    input: Option<&ProductInput>,
    persisted: Option<i64>,
) -> wbc_core::Result<wbc_core::store::Queued> {
    let span = tracing::info_span!("queue write", otel.kind = "client", db.system = "redis", product.id = id);
    let traceparent = span.in_scope(wbc_core::telemetry::current_traceparent);
    s.fences.apply(&s.store, &s.pool, s.pipeline.cache_ttl).await?;
    wbc_core::failpoint!("api::before_redis_write");
    let (capacity, traceparent) = (s.pipeline.queue_capacity, traceparent.as_deref());
    async {
        let queued = s.store.write(id, input, capacity, traceparent, persisted).await;
        let Err(wbc_core::Error::VersionUnknown { .. }) = queued else {
            return queued;
        };
        let persisted = s.persisted.of(&s.pool, id).await;
        s.store.write(id, input, capacity, traceparent, Some(persisted)).await
    }
    .instrument(span)
    .await
}

fn record(id: &str, input: Option<ProductInput>, version: i64) -> Record {
    match input {
        Some(p) => Record::product(id, p, version),
        None => Record::tombstone(id, version),
    }
}

/// Commits to PostgreSQL first, then refreshes the cache, so that an answer means durable.
/// Redis reserves the version, and PostgreSQL raises it past the row's if that is ahead.
/// Without Redis (and where the policy allows), PostgreSQL issues the version itself.
async fn write_through(s: &AppState, id: &str, input: Option<ProductInput>) -> Result<Record> {
    wbc_core::failpoint!("api::before_write_through");
    let reserved = match s.fences.apply(&s.store, &s.pool, s.pipeline.cache_ttl).await {
        Ok(()) => s.store.reserve_version(id, s.pipeline.cache_ttl).await,
        Err(e) => Err(e),
    };
    let reserved = match reserved {
        Ok(v) => v,
        Err(wbc_core::Error::Redis(e)) if s.pipeline.redis_down_policy == RedisDownPolicy::WriteThrough => {
            tracing::warn!(error = %e, %id, "redis unavailable; PostgreSQL issues the version");
            return without_redis(s, id, input).await;
        }
        Err(e) => return Err(e.into()),
    };
    wbc_core::failpoint!("api::after_reserve");
    let record = match db::upsert_next_version(&s.pool, id, input.as_ref(), reserved, true).await {
        Ok(record) => record,
        Err(e) => {
            // A transient failure leaves the outcome unknown (a timeout may come after the commit):
            // a cached value older than this write must not be served as if it were current.
            if !db::is_permanent(&e) {
                if let Err(e) = s.store.fence(id, reserved, s.pipeline.cache_ttl).await {
                    tracing::warn!(error = %e, %id, "cache not invalidated after a failed write-through");
                }
            }
            return Err(e.into());
        }
    };
    wbc_core::failpoint!("api::after_write_through_commit");
    if let Err(e) = s.store.set_clean(&record, s.pipeline.cache_ttl).await {
        tracing::warn!(error = %e, %id, "cache refresh after write-through failed");
        if record.version > reserved {
            s.fences.note(id, record.version);
        }
    }
    Ok(record)
}

/// Writes to PostgreSQL, which issues the version from where Redis's clock is now, and
/// remembers that version for Redis: this process applies it before it next uses Redis
/// (PostgreSQL's record of it is for the worker).
async fn without_redis(s: &AppState, id: &str, input: Option<ProductInput>) -> Result<Record> {
    let record = db::upsert_next_version(&s.pool, id, input.as_ref(), s.store.redis_now_us_at_most(), false).await?;
    wbc_core::failpoint!("api::after_redis_down_commit");
    s.fences.note(id, record.version);
    Ok(record)
}
