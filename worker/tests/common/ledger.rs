//! The ledger of a load over HTTP: every write the API acknowledged (2xx, with its version) and
//! every write whose outcome is unknown; and the verdict that checks PostgreSQL against it.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use serde_json::Value;
use wbc_core::{Price, ProductInput};

/// What one write carried: name, price and quantity, or `None` for a delete.
pub type Fields = Option<(String, Price, i64)>;
/// A PostgreSQL row: name, price, quantity, version, deleted.
pub type Row = (String, Price, i32, i64, bool);

/// Per key: the acknowledged writes with their versions, and failed writes that may still have
/// been applied (the API can die, or fail, after Redis or PostgreSQL took the write).
#[derive(Default)]
pub struct KeyLog {
    pub acked: Vec<(i64, Fields)>,
    pub unsure: Vec<Fields>,
}

impl KeyLog {
    /// The acknowledged write with the highest version.
    pub fn latest(&self) -> Option<&(i64, Fields)> {
        self.acked.iter().max_by_key(|(v, _)| *v)
    }
}

/// Every write of a load, by key, and the reasons of the failed ones.
#[derive(Default)]
pub struct Ledger {
    pub keys: Mutex<HashMap<String, KeyLog>>,
    pub acked: AtomicU64,
    pub failed: Mutex<BTreeMap<String, u64>>,
}

impl Ledger {
    /// Records an acknowledged write.
    pub fn ack(&self, id: &str, version: i64, fields: Fields) {
        self.acked.fetch_add(1, Relaxed);
        self.keys.lock().unwrap().entry(id.to_owned()).or_default().acked.push((version, fields));
    }

    /// Records a failed write, which may still have been applied.
    pub fn fail(&self, id: Option<&str>, fields: Fields, reason: String) {
        *self.failed.lock().unwrap().entry(reason).or_default() += 1;
        if let Some(id) = id {
            self.keys.lock().unwrap().entry(id.to_owned()).or_default().unsure.push(fields);
        }
    }

    /// Every key written, acknowledged or not.
    pub fn ids(&self) -> Vec<String> {
        self.keys.lock().unwrap().keys().cloned().collect()
    }
}

/// An HTTP client whose requests give up after `timeout`.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

/// Sends a create (no id), a replace or a delete (no fields), and records the outcome.
pub async fn write(http: &reqwest::Client, api: &str, id: Option<&str>, fields: Fields, ledger: &Ledger) -> bool {
    // Serialized straight from the product, so that the price goes out as its decimal text.
    let body = |(name, price, quantity): &(String, Price, i64)| ProductInput {
        name: name.clone(),
        price: *price,
        quantity: *quantity,
    };
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

/// What PostgreSQL holds against the ledger.
#[derive(Default)]
pub struct Verdict {
    /// Keys with an acknowledged write.
    pub checked: usize,
    /// Keys whose latest acknowledged write is neither in PostgreSQL nor dead-lettered.
    pub lost: Vec<String>,
    /// Keys whose row is newer than the latest acknowledged write but holds an older one.
    pub older_over_newer: Vec<String>,
    /// Keys whose row holds a value no write carried at its version.
    pub corrupt: Vec<String>,
    /// Acknowledged keys resolved by a dead letter of that version or a newer one.
    pub in_dead_letters: usize,
    /// Keys whose row holds a newer write that was not acknowledged (it may still apply).
    pub unacked_applied: usize,
    /// Records in the dead-letter list.
    pub dead_letters: usize,
}

impl Verdict {
    /// The guarantees broken, one short phrase each; empty when all hold.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |what: &str, keys: &[String]| {
            if !keys.is_empty() {
                out.push(format!("{what} {} (e.g. {})", keys.len(), keys[0]));
            }
        };
        add("lost", &self.lost);
        add("older-over-newer", &self.older_over_newer);
        add("corrupt", &self.corrupt);
        out
    }
}

/// Whether `row` holds what a write carried.
pub fn holds(row: &Row, fields: &Fields) -> bool {
    match fields {
        None => row.4,
        Some((name, price, quantity)) => !row.4 && row.0 == *name && row.1 == *price && i64::from(row.2) == *quantity,
    }
}

/// Sorts one acknowledged key into ok, lost, older-over-newer, corrupt, dead-lettered or
/// overwritten by a newer write that was not acknowledged.
pub fn judge(v: &mut Verdict, id: &str, log: &KeyLog, row: Option<&Row>, dlq: &HashMap<String, Vec<i64>>) {
    let Some((version, fields)) = log.latest() else { return };
    v.checked += 1;
    let older_acked = |r: &Row| log.acked.iter().any(|(av, f)| av < version && holds(r, f));
    match row {
        Some(r) if r.3 == *version && holds(r, fields) => {}
        Some(r) if r.3 == *version => v.corrupt.push(format!("{id}: acked v{version} {fields:?}, row {r:?}")),
        Some(r) if r.3 > *version && log.unsure.iter().any(|f| holds(r, f)) => v.unacked_applied += 1,
        Some(r) if r.3 > *version && older_acked(r) => {
            v.older_over_newer.push(format!("{id}: acked v{version} {fields:?}, row {r:?} holds an older write"))
        }
        Some(r) if r.3 > *version => v.corrupt.push(format!("{id}: acked v{version}, newer row of no write {r:?}")),
        _ if dlq.get(id).is_some_and(|vs| vs.iter().any(|dv| dv >= version)) => v.in_dead_letters += 1,
        _ => v.lost.push(format!("{id}: acked v{version} {fields:?}, row {row:?}")),
    }
}

/// Every row PostgreSQL holds, by id.
pub async fn rows(pool: &sqlx::PgPool) -> HashMap<String, Row> {
    let rows: Vec<(String, String, String, i32, i64, bool)> =
        sqlx::query_as("SELECT id, name, price::text, quantity, version, deleted FROM products")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter().map(|(id, n, p, q, v, d)| (id, (n, p.parse().expect("a price"), q, v, d))).collect()
}

/// The versions in the dead-letter list, by id.
pub async fn dead_letters(store: &wbc_core::Store) -> HashMap<String, Vec<i64>> {
    let mut dlq: HashMap<String, Vec<i64>> = HashMap::new();
    for (raw, d) in store.dead_letters(None).await.expect("dead letters decode") {
        assert!(!d.error.is_empty(), "a dead letter without its reason: {raw}");
        dlq.entry(d.id).or_default().push(d.version);
    }
    dlq
}

/// Checks every acknowledged write against PostgreSQL and the dead-letter list.
pub async fn verify(pool: &sqlx::PgPool, store: &wbc_core::Store, ledger: &Ledger) -> Verdict {
    let rows = rows(pool).await;
    let dlq = dead_letters(store).await;
    let mut v = Verdict { dead_letters: dlq.values().map(Vec::len).sum(), ..Verdict::default() };
    for (id, log) in ledger.keys.lock().unwrap().iter() {
        judge(&mut v, id, log, rows.get(id), &dlq);
    }
    v
}
