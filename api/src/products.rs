//! `/products`: writes queued in Redis (or written through), reads from Redis then PostgreSQL.
use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use wbc_core::{OverflowPolicy, Price, ProductInput, Record, RedisDownPolicy, WriteMode, db, product};

use crate::{
    ApiError, AppState, MAX_BODY_BYTES, Result, mode_label,
    openapi::{FailureSchema, ProductIdSchema, ProductInputSchema, RefusalSchema, schemas},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create)).routes(routes!(read, replace, remove))
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Source {
    Cache,
    Database,
}

/// A product, as the cache or PostgreSQL holds it.
#[derive(Serialize, ToSchema)]
#[schema(as = Product)]
#[serde(deny_unknown_fields)]
struct ProductBody {
    #[schema(schema_with = schemas::id)]
    id: String,
    #[schema(schema_with = schemas::name)]
    name: String,
    #[schema(schema_with = schemas::price)]
    price: Price,
    #[schema(schema_with = schemas::quantity)]
    quantity: i64,
    #[schema(schema_with = schemas::version)]
    version: i64,
    source: Source,
}

/// The tombstone a delete wrote.
#[derive(Serialize, ToSchema)]
#[schema(as = Deleted)]
#[serde(deny_unknown_fields)]
struct DeletedBody {
    #[schema(schema_with = schemas::id)]
    id: String,
    #[schema(schema_with = schemas::version)]
    version: i64,
    /// Always true.
    deleted: bool,
    source: Source,
}

/// The id of a path, or a refusal naming `id`.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String> {
    let Path(id) = path.map_err(|e| ApiError::Invalid { field: "id".into(), reason: e.body_text() })?;
    product::validate_id(&id)?;
    Ok(id)
}

impl ProductBody {
    fn new(r: Record, source: Source) -> Self {
        Self { id: r.id, name: r.name, price: r.price, quantity: r.quantity, version: r.version, source }
    }
}

/// Creates a product under a new id.
#[utoipa::path(post, path = "/products", operation_id = "createProduct", tag = "products",
    request_body(content = ProductInputSchema, content_type = "application/json"),
    security((), ("products_token" = [])),
    responses(
        (status = 201, description = "Accepted: in the cache and queued, or written through", body = ProductBody,
            headers(("Location" = String, description = "/products/{id}"))),
        (status = 400, description = "A field, or the body, breaks a rule", body = RefusalSchema),
        (status = 401, description = "PRODUCTS_TOKEN is set and no token was sent", body = RefusalSchema),
        (status = 403, description = "PRODUCTS_TOKEN is set and another token was sent", body = RefusalSchema),
        (status = 408, description = "Not answered within REQUEST_TIMEOUT", body = RefusalSchema),
        (status = 413, description = "The body is over 64 KiB", body = RefusalSchema),
        (status = 415, description = "The body is not application/json", body = RefusalSchema),
        (status = 503, description = "The queue is full (with Retry-After), or Redis or PostgreSQL is unavailable", body = FailureSchema,
            headers(("Retry-After" = u64, description = "Seconds to wait, when the queue is full"))),
    ))]
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

/// Creates or replaces the product of an id.
#[utoipa::path(put, path = "/products/{id}", operation_id = "replaceProduct", tag = "products",
    request_body(content = ProductInputSchema, content_type = "application/json"),
    params(("id" = inline(ProductIdSchema), Path, description = "The product's id")),
    security((), ("products_token" = [])),
    responses(
        (status = 200, description = "Accepted: in the cache and queued, or written through", body = ProductBody),
        (status = 400, description = "The id, a field or the body breaks a rule", body = RefusalSchema),
        (status = 401, description = "PRODUCTS_TOKEN is set and no token was sent", body = RefusalSchema),
        (status = 403, description = "PRODUCTS_TOKEN is set and another token was sent", body = RefusalSchema),
        (status = 408, description = "Not answered within REQUEST_TIMEOUT", body = RefusalSchema),
        (status = 413, description = "The body is over 64 KiB", body = RefusalSchema),
        (status = 415, description = "The body is not application/json", body = RefusalSchema),
        (status = 503, description = "The queue is full (with Retry-After), or Redis or PostgreSQL is unavailable", body = FailureSchema,
            headers(("Retry-After" = u64, description = "Seconds to wait, when the queue is full"))),
    ))]
async fn replace(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ProductBody>> {
    let id = guarded(&s, path_id(path))?;
    let input = guarded(&s, parse_body(&headers, body))?;
    let (record, source) = write(&s, &id, Some(input), None).await?;
    Ok(Json(ProductBody::new(record, source)))
}

/// Deletes a product: a versioned tombstone, persisted like any write.
#[utoipa::path(delete, path = "/products/{id}", operation_id = "deleteProduct", tag = "products",
    params(("id" = inline(ProductIdSchema), Path, description = "The product's id")),
    security((), ("products_token" = [])),
    responses(
        (status = 200, description = "The tombstone is in the cache and queued, or written through", body = DeletedBody),
        (status = 400, description = "The id breaks its rule", body = RefusalSchema),
        (status = 401, description = "PRODUCTS_TOKEN is set and no token was sent", body = RefusalSchema),
        (status = 403, description = "PRODUCTS_TOKEN is set and another token was sent", body = RefusalSchema),
        (status = 408, description = "Not answered within REQUEST_TIMEOUT", body = RefusalSchema),
        (status = 503, description = "The queue is full (with Retry-After), or Redis or PostgreSQL is unavailable", body = FailureSchema,
            headers(("Retry-After" = u64, description = "Seconds to wait, when the queue is full"))),
    ))]
async fn remove(State(s): State<AppState>, path: Result<Path<String>, PathRejection>) -> Result<Json<DeletedBody>> {
    let id = guarded(&s, path_id(path))?;
    let (record, source) = write(&s, &id, None, None).await?;
    Ok(Json(DeletedBody { id: record.id, version: record.version, deleted: true, source }))
}

/// Reads a product from Redis, or from PostgreSQL on a miss.
#[utoipa::path(get, path = "/products/{id}", operation_id = "readProduct", tag = "products",
    params(("id" = inline(ProductIdSchema), Path, description = "The product's id")),
    security((), ("products_token" = [])),
    responses(
        (status = 200, description = "The product, from the cache or PostgreSQL", body = ProductBody),
        (status = 400, description = "The id breaks its rule", body = RefusalSchema),
        (status = 401, description = "PRODUCTS_TOKEN is set and no token was sent", body = RefusalSchema),
        (status = 403, description = "PRODUCTS_TOKEN is set and another token was sent", body = RefusalSchema),
        (status = 408, description = "Not answered within REQUEST_TIMEOUT", body = RefusalSchema),
        (status = 404, description = "No such product, or it was deleted", body = RefusalSchema),
        (status = 503, description = "Neither Redis nor PostgreSQL answers", body = FailureSchema),
    ))]
async fn read(State(s): State<AppState>, path: Result<Path<String>, PathRejection>) -> Result<Json<ProductBody>> {
    let id = path_id(path)?;
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
    if cached.is_ok()
        && let Err(e) = s.store.set_clean(&record, s.pipeline.cache_ttl).await
    {
        tracing::warn!(error = %e, %id, "cache refill failed");
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
    Ok(product::parse_input(&json_body(headers, body)?)?)
}

/// The bytes of a body sent as JSON (`application/json` or `…+json`), or the refusal naming
/// `content-type` or `body`.
pub(crate) fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes> {
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
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: MAX_BODY_BYTES },
        _ => ApiError::Invalid { field: "body".into(), reason: e.body_text() },
    })
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
            if !db::is_permanent(&e)
                && let Err(e) = s.store.fence(id, reserved, s.pipeline.cache_ttl).await
            {
                tracing::warn!(error = %e, %id, "cache not invalidated after a failed write-through");
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
