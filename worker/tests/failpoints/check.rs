//! The checks of a cell: the queue's size while it runs, and every guarantee once it has drained.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use wbc_core::{store::keys, testkit::verdict::holds};

use crate::{
    cell::Lane,
    common::ledger::{self, Fields},
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

/// The verdict's violations (lost, older over newer, corrupt, dead letters without reason, nothing
/// acknowledged), and cached values that differ from PostgreSQL.
pub async fn guarantees(lane: &Lane, ledger: &ledger::Ledger) -> Vec<String> {
    let (rows, dlq) = (ledger::rows(&lane.pool).await, ledger::dead_letters(&lane.store).await);
    let mut found = ledger.judge(&rows, &dlq).violations();
    let mut differ = Vec::new();
    for id in ledger.ids() {
        let Some(c) = lane.store.get(&id).await.expect("cached value decodes") else { continue };
        let cached = (!c.deleted).then(|| Fields::new(c.name.clone(), c.price, c.quantity));
        let same = rows.get(&id).is_some_and(|r| c.version == r.version && holds(r, &cached));
        if !same {
            let dead = if dlq.versions.contains_key(&id) { ", dead-lettered" } else { "" };
            differ.push(format!("{id}: cache v{} {:?}, postgres {:?}{dead}", c.version, c.name, rows.get(&id)));
        }
    }
    if !differ.is_empty() {
        found.push(format!("cache≠postgres {} (e.g. {})", differ.len(), differ[0]));
    }
    found
}
