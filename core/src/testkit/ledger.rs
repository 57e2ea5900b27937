//! The ledger of a load: every write the API acknowledged, with its version, and every write whose
//! answer was lost. The Rust load generators keep it in memory; `tests/e2e/load.py` writes it as
//! JSON lines, one [`Entry`] each, for `wbc-verify` to read.
use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

/// What a create or a replace carried; a delete carries none (a tombstone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// The product's name.
    pub name: String,
    /// The product's price.
    pub price: f64,
    /// The product's quantity.
    pub quantity: i64,
}

impl Fields {
    /// Fields from their three values.
    pub fn new(name: impl Into<String>, price: f64, quantity: i64) -> Self {
        Self { name: name.into(), price, quantity }
    }
}

/// What one write carried: its fields, or `None` for a delete.
pub type Write = Option<Fields>;

/// One line of the ledger file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Entry {
    /// The API answered 2xx with this id and version.
    Acked {
        /// The key written.
        id: String,
        /// The version the API answered.
        version: i64,
        /// What the write carried; `null` for a delete, which must be spelled out.
        #[serde(deserialize_with = "present")]
        fields: Write,
    },
    /// The write failed or its answer was lost: it may still have been applied.
    Unsure {
        /// The key written.
        id: String,
        /// What the write carried; `null` for a delete, which must be spelled out.
        #[serde(deserialize_with = "present")]
        fields: Write,
        /// Why it counts as failed (`timeout`, `HTTP 503`, …).
        reason: String,
    },
}

/// Makes an `Option` field required: a missing `fields` would otherwise read as a delete.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Write, D::Error> {
    Write::deserialize(d)
}

/// One key's writes: the acknowledged ones with their versions, and the unsure ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyLog {
    /// Acknowledged writes, in the order they were recorded.
    pub acked: Vec<(i64, Write)>,
    /// Writes that failed but may still have been applied.
    pub unsure: Vec<Write>,
}

impl KeyLog {
    /// The acknowledged write with the highest version (the later recorded one on a tie).
    pub fn latest(&self) -> Option<&(i64, Write)> {
        self.acked.iter().max_by_key(|(version, _)| *version)
    }
}

/// Every write of a load with an id, by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ledger {
    /// The writes of each key.
    pub keys: BTreeMap<String, KeyLog>,
    /// Acknowledged writes in all.
    pub acked_total: u64,
    /// Unsure writes in all.
    pub unsure_total: u64,
}

impl Ledger {
    /// Adds one write.
    pub fn record(&mut self, entry: Entry) {
        match entry {
            Entry::Acked { id, version, fields } => {
                self.acked_total += 1;
                self.keys.entry(id).or_default().acked.push((version, fields));
            }
            Entry::Unsure { id, fields, .. } => {
                self.unsure_total += 1;
                self.keys.entry(id).or_default().unsure.push(fields);
            }
        }
    }

    /// Reads a ledger from JSON lines, one [`Entry`] each; blank lines are skipped. An error names
    /// the line, since a ledger that is misread would judge the wrong writes.
    pub fn parse(json_lines: &str) -> Result<Self> {
        let mut ledger = Self::default();
        for (n, line) in json_lines.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let entry = serde_json::from_str(line)
                .map_err(|e| Error::invalid(format!("ledger line {}", n + 1), e.to_string()))?;
            ledger.record(entry);
        }
        Ok(ledger)
    }

    /// Reads a ledger file.
    pub fn read(path: &Path) -> Result<Self> {
        super::read_file(path, Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_reads_acknowledged_writes_deletes_and_unsure_writes() {
        let ledger = Ledger::parse(concat!(
            r#"{"outcome":"acked","id":"k-1","version":3,"fields":{"name":"a","price":1.5,"quantity":2}}"#,
            "\n\n",
            r#"{"outcome":"acked","id":"k-1","version":5,"fields":null}"#,
            "\n",
            r#"{"outcome":"unsure","id":"k-2","fields":null,"reason":"timeout"}"#,
        ))
        .unwrap();
        assert_eq!((ledger.acked_total, ledger.unsure_total), (2, 1));
        assert_eq!(ledger.keys["k-1"].latest(), Some(&(5, None)));
        assert_eq!(ledger.keys["k-1"].acked[0], (3, Some(Fields::new("a", 1.5, 2))));
        assert_eq!(ledger.keys["k-2"].unsure, vec![None]);
    }

    #[test]
    fn a_ledger_line_without_fields_or_with_unknown_keys_is_refused_with_its_line_number() {
        let missing = Ledger::parse("\n{\"outcome\":\"acked\",\"id\":\"k\",\"version\":1}").unwrap_err();
        assert!(missing.to_string().starts_with("ledger line 2: missing field `fields`"), "{missing}");
        let unknown = r#"{"outcome":"acked","id":"k","version":1,"fields":null,"verison":2}"#;
        assert!(Ledger::parse(unknown).is_err());
        assert!(Ledger::parse(r#"{"outcome":"maybe","id":"k","fields":null}"#).is_err());
    }

    #[test]
    fn an_entry_written_by_rust_reads_back_as_the_same_entry() {
        let entry = Entry::Unsure { id: "k".into(), fields: Some(Fields::new("n", 0.1, 7)), reason: "HTTP 503".into() };
        assert_eq!(serde_json::from_str::<Entry>(&serde_json::to_string(&entry).unwrap()).unwrap(), entry);
    }
}
