//! The PostgreSQL side: migrations, versioned batch upserts and reads.
use std::{future::Future, str::FromStr, time::Duration};

use sqlx::{
    PgPool, Row,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{Record, Result};

/// The `wbc_meta` key of the last checkpoint the worker set in Redis (see `store::keys::CHECKPOINT`).
pub const CHECKPOINT_KEY: &str = "checkpoint";
/// The `wbc_meta` key of the highest write sequence seen in Redis at a checkpoint.
pub const SEQ_KEY: &str = "seq";
/// The `wbc_meta` key of a loss reported but not yet settled in Redis: `checkpoint:seq:at_ms`
/// as Redis held them when the loss was found.
pub const LOSS_PENDING_KEY: &str = "loss_pending";
/// The `wbc_meta` key of the time of the last detected loss of Redis data.
pub const DATA_LOSS_AT_KEY: &str = "data_loss_at_ms";
/// The `wbc_meta` key of the number of losses of Redis data detected so far.
pub const DATA_LOSSES_KEY: &str = "data_losses";
/// The `wbc_meta` key of the writes Redis forgot, at least, summed over the losses detected so far.
pub const DATA_LOSS_WRITES_KEY: &str = "data_loss_at_least_writes";

/// Serializes loss detection across workers: a transaction-scoped advisory lock.
const LOSS_CHECK_LOCK: i64 = 0x7762_635f_6c6f_7373;

/// Longest wait for a connection of the pool, whatever the statement timeout: a refused
/// connection is retried within it, and a request should not wait long on a database that is down.
const MAX_ACQUIRE: Duration = Duration::from_secs(5);
/// How long past the statement timeout the client waits: within it PostgreSQL ends a slow
/// statement itself, cleanly; past it the server cannot answer at all (a hung host).
const CLIENT_MARGIN: Duration = Duration::from_secs(1);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool whose calls give up on a database that hangs as on one that is down: PostgreSQL
/// ends a statement after `statement_timeout`, the client gives up a second later, and waiting
/// for a connection is bounded by the timeout too (and by 5 s).
pub async fn connect(url: &str, max_connections: u32, statement_timeout: Duration) -> Result<PgPool> {
    connect_with(PgConnectOptions::from_str(url)?, max_connections, statement_timeout).await
}

/// `connect` with options resolved from the settings (`StoreArgs::database`). A refusal at start
/// (authentication, TLS, no answer) is an `Error::Connect` that says which.
pub async fn connect_with(
    options: PgConnectOptions,
    max_connections: u32,
    statement_timeout: Duration,
) -> Result<PgPool> {
    let options = options.options([("statement_timeout", statement_timeout.as_millis())]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(statement_timeout.min(MAX_ACQUIRE))
        .connect_with(options.clone())
        .await
        .map_err(|e| crate::Error::connect_database(&options, e))
}

/// The statement timeout the pool's connections start with, in milliseconds as `connect` sets
/// it: the pool carries it, so every call finds its bound there. The last setting wins, as in
/// PostgreSQL; one in other units (a URL's own) leaves calls unbounded on the client.
fn statement_timeout(pool: &PgPool) -> Option<Duration> {
    let options = pool.connect_options();
    let ms =
        options.get_options()?.split_whitespace().filter_map(|o| o.strip_prefix("statement_timeout=")).next_back()?;
    ms.parse().ok().map(Duration::from_millis)
}

/// The longest one call of the pool may take before the client gives up on the server.
pub fn call_limit(pool: &PgPool) -> Duration {
    statement_timeout(pool).unwrap_or(MAX_ACQUIRE) + CLIENT_MARGIN
}

/// Runs one call of the pool, bounded by its statement timeout. A call cut short is a transient
/// error, as a lost connection is.
async fn bounded<T>(pool: &PgPool, call: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T> {
    let Some(timeout) = statement_timeout(pool) else {
        return Ok(call.await?);
    };
    match tokio::time::timeout(timeout + CLIENT_MARGIN, call).await {
        Ok(r) => Ok(r?),
        Err(_) => {
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"));
            Err(sqlx::Error::Io(e).into())
        }
    }
}

/// Applies pending migrations; safe to run from several processes at once. They run on a
/// connection of their own without the statement timeout, which a long migration may exceed.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await?;
    let migrated = MIGRATOR.run(&mut *conn).await;
    // Not back into the pool: its statement timeout is off.
    conn.close().await?;
    migrated?;
    Ok(())
}

/// Writes a batch in one statement. A row only replaces an older version, so retries,
/// duplicates and reclaimed work never put an old value over a new one.
/// Returns the ids of the rows not written because PostgreSQL held the same or a newer version
/// (stale): rare, so the statement sends back only those, not every row it wrote.
pub async fn upsert(pool: &PgPool, records: &[Record]) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(records.len());
    let mut names = Vec::with_capacity(records.len());
    let mut prices = Vec::with_capacity(records.len());
    let mut quantities = Vec::with_capacity(records.len());
    let mut versions = Vec::with_capacity(records.len());
    let mut deleted = Vec::with_capacity(records.len());
    for r in records {
        ids.push(r.id.as_str());
        names.push(r.name.as_str());
        prices.push(r.price.decimal());
        quantities.push(r.quantity);
        versions.push(r.version);
        deleted.push(r.deleted);
    }
    let call = sqlx::query_scalar(
        "WITH written AS ( \
           INSERT INTO products (id, name, price, quantity, version, deleted) \
           SELECT id, name, price, quantity, version, deleted \
           FROM UNNEST($1::text[], $2::text[], $3::numeric[], $4::int8[], $5::int8[], $6::bool[]) \
             AS b (id, name, price, quantity, version, deleted) \
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price, \
             quantity = EXCLUDED.quantity, version = EXCLUDED.version, deleted = EXCLUDED.deleted, \
             updated_at = now() \
           WHERE products.version < EXCLUDED.version \
           RETURNING id) \
         SELECT id FROM UNNEST($1::text[]) AS b (id) WHERE id NOT IN (SELECT id FROM written)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&prices)
    .bind(&quantities)
    .bind(&versions)
    .bind(&deleted)
    .fetch_all(pool);
    bounded(pool, call).await
}

/// Writes one record with a version PostgreSQL settles: `at_least`, raised past the row's
/// version, so that it is newer than every version persisted for the key whatever the clocks did.
/// A version Redis does not know (`redis_issued` is false: PostgreSQL issued it while Redis was
/// unreachable, or it was raised above the one Redis reserved) is recorded in
/// `wbc_fallback_versions` by the same statement, so that it reaches Redis even if this process
/// dies before it can apply it there (see `fallback`). Returns the record as written.
pub async fn upsert_next_version(
    pool: &PgPool,
    id: &str,
    input: Option<&crate::ProductInput>,
    at_least: i64,
    redis_issued: bool,
) -> Result<Record> {
    let mut record = match input {
        Some(p) => Record::product(id, p.clone(), at_least),
        None => Record::tombstone(id, at_least),
    };
    let call = sqlx::query_scalar(
        "WITH written AS ( \
           INSERT INTO products (id, name, price, quantity, version, deleted) \
           VALUES ($1, $2, $3::numeric, $4::int8, $5, $6) \
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price, \
             quantity = EXCLUDED.quantity, deleted = EXCLUDED.deleted, updated_at = now(), \
             version = GREATEST(EXCLUDED.version, products.version + 1) \
           RETURNING id, version), \
         recorded AS ( \
           INSERT INTO wbc_fallback_versions (id, version) \
           SELECT id, version FROM written WHERE NOT $7 OR version > $5 \
           ON CONFLICT (id) DO UPDATE SET \
             version = GREATEST(wbc_fallback_versions.version, EXCLUDED.version)) \
         SELECT version FROM written",
    )
    .bind(&record.id)
    .bind(&record.name)
    .bind(record.price.decimal())
    .bind(record.quantity)
    .bind(record.version)
    .bind(record.deleted)
    .bind(redis_issued)
    .fetch_one(pool);
    record.version = bounded(pool, call).await?;
    Ok(record)
}

/// The version PostgreSQL holds for a key, tombstones included: one primary-key lookup.
pub async fn persisted_version(pool: &PgPool, id: &str) -> Result<Option<i64>> {
    bounded(pool, sqlx::query_scalar("SELECT version FROM products WHERE id = $1").bind(id).fetch_optional(pool)).await
}

/// Up to `limit` versions that PostgreSQL issued without Redis and Redis has not been told of.
pub async fn fallback_versions(pool: &PgPool, limit: i64) -> Result<Vec<(String, i64)>> {
    let call = sqlx::query_as("SELECT id, version FROM wbc_fallback_versions LIMIT $1").bind(limit).fetch_all(pool);
    bounded(pool, call).await
}

/// Forgets versions applied to Redis; a newer one recorded for the key meanwhile stays.
pub async fn forget_fallback_versions(pool: &PgPool, applied: &[(String, i64)]) -> Result<()> {
    let (ids, versions): (Vec<&str>, Vec<i64>) = applied.iter().map(|(id, v)| (id.as_str(), *v)).unzip();
    let call = sqlx::query(
        "DELETE FROM wbc_fallback_versions f USING UNNEST($1::text[], $2::int8[]) AS a (id, version) \
         WHERE f.id = a.id AND f.version <= a.version",
    )
    .bind(&ids)
    .bind(&versions)
    .execute(pool);
    bounded(pool, call).await?;
    Ok(())
}

/// The stored record of a key, tombstones included.
pub async fn get(pool: &PgPool, id: &str) -> Result<Option<Record>> {
    let call =
        sqlx::query("SELECT id, name, price, quantity::int8 AS quantity, version, deleted FROM products WHERE id = $1")
            .bind(id)
            .fetch_optional(pool);
    let Some(row) = bounded(pool, call).await? else {
        return Ok(None);
    };
    // NUMERIC(12, 2) holds only prices; a wider column (a migration gone wrong) must not be
    // served as a rounded one.
    let price = crate::Price::try_from(row.get::<rust_decimal::Decimal, _>("price"))
        .map_err(|e| crate::Error::Corrupt { key: format!("products/{id}"), reason: e.to_string() })?;
    Ok(Some(Record {
        id: row.get("id"),
        name: row.get("name"),
        price,
        quantity: row.get("quantity"),
        version: row.get("version"),
        deleted: row.get("deleted"),
    }))
}

/// The highest version PostgreSQL holds.
pub async fn max_version(db: impl sqlx::PgExecutor<'_>) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM products").fetch_one(db).await?)
}

/// Opens the transaction of one pass of loss detection; no other worker's pass runs until it ends.
pub async fn begin_loss_check(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOSS_CHECK_LOCK).execute(&mut *tx).await?;
    Ok(tx)
}

/// A `wbc_meta` value.
pub async fn meta(db: impl sqlx::PgExecutor<'_>, key: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT value FROM wbc_meta WHERE key = $1").bind(key).fetch_optional(db).await?)
}

/// The durable record of the losses of Redis data, as `/readyz` reports it and the controller reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataLosses {
    /// Losses detected so far.
    pub count: u64,
    /// When the last one was detected (milliseconds since the epoch).
    pub last_detected_at_ms: Option<u64>,
    /// A lower bound of the writes Redis forgot, summed over the losses (some may have been persisted
    /// already; losses detected by a version that did not record it count none).
    pub at_least_writes: u64,
}

/// The record of the losses of Redis data, from `wbc_meta`.
pub async fn data_losses(db: impl sqlx::PgExecutor<'_>) -> Result<DataLosses> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM wbc_meta WHERE key = ANY($1)")
        .bind(&[DATA_LOSSES_KEY, DATA_LOSS_AT_KEY, DATA_LOSS_WRITES_KEY][..])
        .fetch_all(db)
        .await?;
    let value = |key: &str| rows.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse::<u64>().ok());
    Ok(DataLosses {
        count: value(DATA_LOSSES_KEY).unwrap_or(0),
        last_detected_at_ms: value(DATA_LOSS_AT_KEY),
        at_least_writes: value(DATA_LOSS_WRITES_KEY).unwrap_or(0),
    })
}

/// Removes a `wbc_meta` value.
pub async fn delete_meta(db: impl sqlx::PgExecutor<'_>, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM wbc_meta WHERE key = $1").bind(key).execute(db).await?;
    Ok(())
}

/// Sets a `wbc_meta` value.
pub async fn set_meta(db: impl sqlx::PgExecutor<'_>, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO wbc_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
    )
    .bind(key)
    .bind(value)
    .execute(db)
    .await?;
    Ok(())
}

/// Whether retrying cannot help: the row breaks a constraint (SQLSTATE class 23) or holds a value
/// the column cannot store (class 22). Everything else, such as a lost connection, is transient.
pub fn is_permanent(e: &crate::Error) -> bool {
    match e {
        crate::Error::Database(sqlx::Error::Database(db)) => {
            db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
        }
        crate::Error::Database(sqlx::Error::Encode(_)) => true,
        crate::Error::Failpoint { permanent, .. } => *permanent,
        _ => false,
    }
}

pub async fn ping(pool: &PgPool) -> Result<()> {
    bounded(pool, sqlx::query("SELECT 1").execute(pool)).await?;
    Ok(())
}
