//! The version PostgreSQL holds for a key that Redis no longer remembers, so that a write queued
//! in Redis is versioned above it even when the row is ahead of Redis's clock.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use wbc_core::{PgPool, db, now_ms};

/// Longest wait for the lookup: a queued write must not wait on a slow database for long.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed lookup, writes skip it for this long instead of each waiting for the timeout.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Looks up persisted versions, and skips the lookups for a while once PostgreSQL fails to answer.
#[derive(Default)]
pub struct PersistedVersions {
    skip_until_ms: AtomicU64,
}

impl PersistedVersions {
    /// The version PostgreSQL holds for `id`, 0 for none. While PostgreSQL cannot answer, also 0:
    /// write-behind keeps accepting writes then, and such a write is versioned by Redis's clock
    /// alone (the window the README describes).
    pub async fn of(&self, pool: &PgPool, id: &str) -> i64 {
        if now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            tracing::debug!(%id, "postgres unavailable; versioning the write by Redis's clock alone");
            return 0;
        }
        let error = match tokio::time::timeout(LOOKUP_TIMEOUT, db::persisted_version(pool, id)).await {
            Ok(Ok(version)) => return version.unwrap_or(0),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {LOOKUP_TIMEOUT:?}"),
        };
        self.skip_until_ms.store(now_ms() + SKIP_AFTER_FAILURE.as_millis() as u64, Ordering::Relaxed);
        tracing::warn!(%error, %id, "persisted version unknown; versioning writes by Redis's clock alone for a while");
        0
    }
}
