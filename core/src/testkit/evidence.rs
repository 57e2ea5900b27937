//! What the system holds after a load, for the verdict to compare with the ledger: PostgreSQL's rows
//! and the dead-letter list, read through connections (the local tests) or from the files that the
//! Kubernetes suite dumps (it reaches PostgreSQL only through `kubectl exec`).
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use serde::{Deserialize, Serialize};

use crate::{DeadLetter, Error, PgPool, Result, Store};

/// The query whose rows [`Row`] reads, as a macro so that [`ROWS_JSON_SQL`] can embed it.
macro_rules! rows_sql {
    () => {
        "SELECT id, name, price::float8 AS price, quantity, version, deleted FROM products"
    };
}

/// The query whose rows [`Row`] reads.
pub const ROWS_SQL: &str = rows_sql!();
/// [`ROWS_SQL`] as JSON, one [`Row`] a row: the dump that [`parse_rows`] reads (`wbc-verify
/// --rows-query` prints it for the Kubernetes suite, which reaches PostgreSQL only through psql).
pub const ROWS_JSON_SQL: &str = concat!("SELECT row_to_json(r) FROM (", rows_sql!(), ") r");

/// A row of `products`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// The key.
    pub id: String,
    /// The product's name.
    pub name: String,
    /// The product's price.
    pub price: f64,
    /// The product's quantity.
    pub quantity: i32,
    /// The version of the write the row holds.
    pub version: i64,
    /// Whether the row is a tombstone.
    pub deleted: bool,
}

/// Rows by id.
pub type Rows = BTreeMap<String, Row>;

/// Every row PostgreSQL holds.
pub async fn rows(pool: &PgPool) -> Result<Rows> {
    let rows: Vec<Row> = sqlx::query_as(ROWS_SQL).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Rows from JSON lines, one [`Row`] each (what `row_to_json` prints for [`ROWS_SQL`]).
pub fn parse_rows(json_lines: &str) -> Result<Rows> {
    let mut rows = Rows::new();
    for (n, line) in json_lines.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Row =
            serde_json::from_str(line).map_err(|e| Error::invalid(format!("rows line {}", n + 1), e.to_string()))?;
        if let Some(twice) = rows.insert(row.id.clone(), row) {
            return Err(Error::invalid(format!("rows line {}", n + 1), format!("{} listed twice", twice.id)));
        }
    }
    Ok(rows)
}

/// The dead-letter list as the verdict needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeadLetters {
    /// The versions parked, by key.
    pub versions: HashMap<String, Vec<i64>>,
    /// Letters that lost their reason (`key vVERSION`): an operator could not tell why they failed.
    pub without_reason: Vec<String>,
    /// Letters in all.
    pub total: usize,
}

impl DeadLetters {
    /// Sorts the letters by key.
    pub fn new(letters: impl IntoIterator<Item = DeadLetter>) -> Self {
        let mut out = Self::default();
        for letter in letters {
            out.total += 1;
            if letter.error.trim().is_empty() {
                out.without_reason.push(format!("{} v{}", letter.id, letter.version));
            }
            out.versions.entry(letter.id).or_default().push(letter.version);
        }
        out
    }

    /// Every letter of the list in Redis.
    pub async fn read(store: &Store) -> Result<Self> {
        Ok(Self::new(store.dead_letters(None).await?.into_iter().map(|(_, letter)| letter)))
    }

    /// The letters of a `GET /admin/dlq` answer. A listing shorter than its count is refused: the
    /// letters left out could be the ones that resolve a key.
    pub fn parse_listing(json: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Listing {
            count: usize,
            dead_letters: Vec<DeadLetter>,
        }
        let listing: Listing =
            serde_json::from_str(json).map_err(|e| Error::invalid("dead-letter listing", e.to_string()))?;
        if listing.dead_letters.len() != listing.count {
            let reason = format!("lists {} of {} letters", listing.dead_letters.len(), listing.count);
            return Err(Error::invalid("dead-letter listing", reason));
        }
        Ok(Self::new(listing.dead_letters))
    }

    /// Reads a `GET /admin/dlq` answer saved to a file.
    pub fn read_listing(path: &Path) -> Result<Self> {
        super::read_file(path, Self::parse_listing)
    }
}

/// Reads a file of rows as JSON lines.
pub fn read_rows(path: &Path) -> Result<Rows> {
    super::read_file(path, parse_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str, version: i64, error: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "version": version, "deleted": true, "value": null, "error": error,
            "attempts": 3, "failed_at_ms": 1})
    }

    #[test]
    fn rows_read_from_json_lines_are_keyed_by_id_and_a_key_listed_twice_is_refused() {
        let line = r#"{"id":"k","name":"n","price":1.25,"quantity":3,"version":9,"deleted":false}"#;
        let rows = parse_rows(&format!("{line}\n")).unwrap();
        assert_eq!(
            rows["k"],
            Row { id: "k".into(), name: "n".into(), price: 1.25, quantity: 3, version: 9, deleted: false }
        );
        let twice = parse_rows(&format!("{line}\n{line}")).unwrap_err().to_string();
        assert!(twice.contains("rows line 2") && twice.contains("twice"), "{twice}");
    }

    #[test]
    fn a_dead_letter_listing_is_read_by_key_and_a_truncated_one_is_refused() {
        let body =
            serde_json::json!({"count": 2, "dead_letters": [letter("k", 4, "23514: check"), letter("k", 6, " ")]});
        let letters = DeadLetters::parse_listing(&body.to_string()).unwrap();
        assert_eq!((letters.total, &letters.versions["k"]), (2, &vec![4, 6]));
        assert_eq!(letters.without_reason, vec!["k v6".to_owned()]);
        let truncated = serde_json::json!({"count": 3, "dead_letters": [letter("k", 4, "x")]});
        let refused = DeadLetters::parse_listing(&truncated.to_string()).unwrap_err().to_string();
        assert!(refused.contains("lists 1 of 3"), "{refused}");
    }
}
