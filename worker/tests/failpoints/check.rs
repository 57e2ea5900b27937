//! The checks of a cell: the queue's size while it runs, and every guarantee once it has drained.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use wbc_core::store::keys;

use crate::{
    cell::Lane,
    common::ledger::{self, verify},
};

/// Samples the largest dirty + in-flight count until stopped. Read in one MULTI, unlike
/// /admin/queue, so that a claim cannot fall between the two counts and add a key twice.
pub fn sample_queue_size(store: wbc_core::Store, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let (mut conn, mut max) = (store.connection(), 0);
        while !stop.load(Relaxed) {
            let counts: Result<(u64, u64), _> =
                redis::pipe().atomic().zcard(keys::DIRTY).scard(keys::IN_FLIGHT).query_async(&mut conn).await;
            max = counts.map_or(max, |(dirty, in_flight)| max.max(dirty + in_flight));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        max
    })
}

/// Lost, older over newer and corrupt writes, and cached values that differ from PostgreSQL.
pub async fn guarantees(lane: &Lane, ledger: &ledger::Ledger) -> Vec<String> {
    let verdict = verify(&lane.pool, &lane.store, ledger).await;
    let mut found = verdict.violations();
    let (rows, dlq) = (ledger::rows(&lane.pool).await, ledger::dead_letters(&lane.store).await);
    let mut differ = Vec::new();
    for id in ledger.ids() {
        let Some(c) = lane.store.get(&id).await.expect("cached value decodes") else { continue };
        let same = rows.get(&id).is_some_and(|r| {
            c.version == r.3
                && c.deleted == r.4
                && (c.deleted || (c.name == r.0 && c.price == r.1 && c.quantity == i64::from(r.2)))
        });
        if !same {
            let dead = if dlq.contains_key(&id) { ", dead-lettered" } else { "" };
            differ.push(format!("{id}: cache v{} {:?}, postgres {:?}{dead}", c.version, c.name, rows.get(&id)));
        }
    }
    if !differ.is_empty() {
        found.push(format!("cache≠postgres {} (e.g. {})", differ.len(), differ[0]));
    }
    if ledger.acked.load(Relaxed) == 0 {
        found.push("no write acknowledged".into());
    }
    found
}
