//! Writes over HTTP recorded in the shared ledger of `wbc_core::testkit`, and the verdict on them
//! from the live PostgreSQL and Redis: the rules themselves live in `wbc_core::testkit::verdict`.
use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use serde_json::Value;
use wbc_core::ProductInput;
use wbc_core::testkit::{evidence, ledger, verdict};
pub use wbc_core::testkit::{
    evidence::{DeadLetters, Rows},
    ledger::{Fields, Write},
    verdict::Verdict,
};

/// The ledger of a load shared by its writers, with the reasons of the failed writes.
#[derive(Default)]
pub struct Ledger {
    writes: Mutex<ledger::Ledger>,
    /// Acknowledged writes, readable without the lock while writers run.
    pub acked: AtomicU64,
    /// Failed writes by reason, those without an id included.
    pub failed: Mutex<BTreeMap<String, u64>>,
}

impl Ledger {
    /// Records an acknowledged write.
    pub fn ack(&self, id: &str, version: i64, fields: Write) {
        self.acked.fetch_add(1, Relaxed);
        self.writes.lock().unwrap().record(ledger::Entry::Acked { id: id.to_owned(), version, fields });
    }

    /// Records a failed write, which may still have been applied.
    pub fn fail(&self, id: Option<&str>, fields: Write, reason: String) {
        *self.failed.lock().unwrap().entry(reason.clone()).or_default() += 1;
        if let Some(id) = id {
            self.writes.lock().unwrap().record(ledger::Entry::Unsure { id: id.to_owned(), fields, reason });
        }
    }

    /// Checks every acknowledged write against `rows` and `dead_letters`.
    pub fn judge(&self, rows: &Rows, dead_letters: &DeadLetters) -> Verdict {
        verdict::judge(&self.writes.lock().unwrap(), rows, dead_letters)
    }

    /// Every key written, acknowledged or not.
    pub fn ids(&self) -> Vec<String> {
        self.writes.lock().unwrap().keys.keys().cloned().collect()
    }
}

/// An HTTP client whose requests give up after `timeout`, with the admin token.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).default_headers(super::admin_headers()).build().unwrap()
}

/// Sends a create (no id), a replace or a delete (no fields), and records the outcome.
pub async fn write(http: &reqwest::Client, api: &str, id: Option<&str>, fields: Write, ledger: &Ledger) -> bool {
    // Serialized straight from the product, so that the price goes out as its decimal text.
    let body = |f: &Fields| ProductInput { name: f.name.clone(), price: f.price, quantity: f.quantity };
    let request = match (id, &fields) {
        (None, Some(f)) => http.post(format!("{api}/products")).json(&body(f)),
        (Some(id), Some(f)) => http.put(format!("{api}/products/{id}")).json(&body(f)),
        (Some(id), None) => http.delete(format!("{api}/products/{id}")),
        (None, None) => unreachable!("a delete names its key"),
    };
    let answer = match request.send().await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.map_err(|_| "unreadable 2xx body".to_owned()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err("timeout".to_owned()),
        Err(_) => Err("connection error".to_owned()),
    };
    let acked = answer.as_ref().ok().and_then(|v| Some((v["id"].as_str()?.to_owned(), v["version"].as_i64()?)));
    match acked {
        Some((acked_id, version)) => {
            assert!(id.is_none_or(|id| id == acked_id), "asked for {id:?}, answered {acked_id}");
            ledger.ack(&acked_id, version, fields);
            true
        }
        None => {
            ledger.fail(id, fields, answer.err().unwrap_or_else(|| "2xx without id or version".into()));
            false
        }
    }
}

/// Every row PostgreSQL holds, by id.
pub async fn rows(pool: &sqlx::PgPool) -> Rows {
    evidence::rows(pool).await.expect("products read")
}

/// The dead-letter list.
pub async fn dead_letters(store: &wbc_core::Store) -> DeadLetters {
    DeadLetters::read(store).await.expect("dead letters decode")
}

/// Checks every acknowledged write against PostgreSQL and the dead-letter list.
pub async fn verify(pool: &sqlx::PgPool, store: &wbc_core::Store, ledger: &Ledger) -> Verdict {
    ledger.judge(&rows(pool).await, &dead_letters(store).await)
}
