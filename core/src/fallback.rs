//! Writes that bypassed Redis: PostgreSQL issued their versions while Redis was unreachable, so
//! Redis still holds what it held before them. Until each version is applied to Redis (its key's
//! last issued version raised, older cached values dropped; see `Store::fence`), Redis would serve
//! the older value and could version a later write below it. PostgreSQL records each such version
//! with its row; the worker applies them every second, and the API that wrote them applies its
//! own before it next uses Redis, so that it never serves the value its own write replaced.
use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{PgPool, Result, Store, db};

/// Versions one API process wrote through without Redis and has not yet applied there. Beyond
/// this many keys it stops remembering them one by one and applies every recorded version instead.
const MAX_PENDING: usize = 100_000;

/// Rows of `wbc_fallback_versions` applied per round trip.
const BATCH: i64 = 500;

/// The versions this process had PostgreSQL issue and has not applied to Redis yet.
#[derive(Default)]
pub struct PendingFences {
    versions: Mutex<HashMap<String, i64>>,
    /// Some versions were not remembered: apply everything PostgreSQL recorded.
    overflowed: AtomicBool,
    /// Whether there is anything to apply; read on every request, so kept outside the lock.
    any: AtomicBool,
}

impl PendingFences {
    /// Remembers a version PostgreSQL issued for `id` without Redis.
    pub fn note(&self, id: &str, version: i64) {
        let mut versions = self.versions.lock().expect("pending fences lock");
        if versions.len() >= MAX_PENDING && !versions.contains_key(id) {
            self.overflowed.store(true, Ordering::Release);
        } else {
            let v = versions.entry(id.to_owned()).or_insert(version);
            *v = (*v).max(version);
        }
        self.any.store(true, Ordering::Release);
    }

    /// Applies every remembered version to Redis. Call before any use of Redis for a key: an
    /// error means Redis may still serve values older than PostgreSQL's.
    pub async fn apply(&self, store: &Store, pool: &PgPool, clean_ttl: Duration) -> Result<()> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(());
        }
        // Taken before the work, so that an overflow during it is applied next time.
        let overflowed = self.overflowed.swap(false, Ordering::AcqRel);
        let snapshot: Vec<(String, i64)> =
            self.versions.lock().expect("pending fences lock").iter().map(|(id, v)| (id.clone(), *v)).collect();
        let applied = apply_all(store, pool, clean_ttl, &snapshot, overflowed).await;
        if applied.is_err() && overflowed {
            self.overflowed.store(true, Ordering::Release);
        }
        applied?;
        let mut versions = self.versions.lock().expect("pending fences lock");
        for (id, version) in snapshot {
            // A newer version noted meanwhile stays for the next round.
            if versions.get(&id).is_some_and(|v| *v <= version) {
                versions.remove(&id);
            }
        }
        self.any.store(!versions.is_empty() || self.overflowed.load(Ordering::Acquire), Ordering::Release);
        Ok(())
    }
}

async fn apply_all(
    store: &Store,
    pool: &PgPool,
    clean_ttl: Duration,
    versions: &[(String, i64)],
    recorded_too: bool,
) -> Result<()> {
    for (id, version) in versions {
        store.fence(id, *version, clean_ttl).await?;
    }
    if recorded_too {
        apply_recorded(store, pool, clean_ttl).await?;
    }
    Ok(())
}

/// Applies every version PostgreSQL recorded for writes that bypassed Redis, then forgets them.
/// Returns how many were applied. Safe to run from several processes at once.
pub async fn apply_recorded(store: &Store, pool: &PgPool, clean_ttl: Duration) -> Result<u64> {
    let mut applied = 0;
    loop {
        let versions = db::fallback_versions(pool, BATCH).await?;
        for (id, version) in &versions {
            store.fence(id, *version, clean_ttl).await?;
        }
        if !versions.is_empty() {
            db::forget_fallback_versions(pool, &versions).await?;
        }
        applied += versions.len() as u64;
        if (versions.len() as i64) < BATCH {
            return Ok(applied);
        }
    }
}
