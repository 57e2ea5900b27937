//! The verdict of a load under faults: each key's latest acknowledged write checked against the row
//! PostgreSQL holds and the dead-letter list. The one copy of these rules; the local chaos test, the
//! failpoint matrix and (through `wbc-verify`) the Kubernetes suite all judge with it.
use serde::Serialize;

use super::{
    evidence::{DeadLetters, Row, Rows},
    ledger::{KeyLog, Ledger, Write},
};

/// Prices are `NUMERIC(12, 2)`: a write's price and the row's may differ by rounding only.
const PRICE_TOLERANCE: f64 = 0.005;
/// Examples of each violation a summary shows.
const EXAMPLES: usize = 10;

/// What became of a key's latest acknowledged write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The row holds it, at its version.
    Ok,
    /// It, or a newer write of the key, is in the dead-letter list: an operator sees it there.
    DeadLettered,
    /// The row holds a newer write whose answer was lost, which may rightly have been applied.
    OverwrittenByUnacked,
    /// Neither the row nor the dead-letter list has it (or anything newer).
    Lost,
    /// The row's version is newer, but it holds an older acknowledged write.
    OlderOverNewer,
    /// The row holds a value no write carried at its version.
    Corrupt,
}

impl Outcome {
    /// Whether the outcome breaks a guarantee.
    pub fn is_violation(self) -> bool {
        matches!(self, Self::Lost | Self::OlderOverNewer | Self::Corrupt)
    }
}

/// Whether `row` holds what a write carried.
pub fn holds(row: &Row, write: &Write) -> bool {
    match write {
        None => row.deleted,
        Some(f) => {
            !row.deleted
                && row.name == f.name
                && (row.price - f.price).abs() < PRICE_TOLERANCE
                && i64::from(row.quantity) == f.quantity
        }
    }
}

/// Sorts one key by its latest acknowledged write; `None` when none was acknowledged. The order of
/// the checks matters: a newer row is first matched against unsure writes, since a write whose
/// answer was lost may have been applied after the last acknowledged one.
pub fn classify(log: &KeyLog, row: Option<&Row>, dead_versions: &[i64]) -> Option<Outcome> {
    let (version, write) = log.latest()?;
    let older_acked = |r: &Row| log.acked.iter().any(|(v, w)| v < version && holds(r, w));
    Some(match row {
        Some(r) if r.version == *version && holds(r, write) => Outcome::Ok,
        Some(r) if r.version == *version => Outcome::Corrupt,
        Some(r) if r.version > *version && log.unsure.iter().any(|w| holds(r, w)) => Outcome::OverwrittenByUnacked,
        Some(r) if r.version > *version && older_acked(r) => Outcome::OlderOverNewer,
        Some(r) if r.version > *version => Outcome::Corrupt,
        // A row older than the write, or none: only the dead-letter list can account for it.
        _ if dead_versions.iter().any(|v| v >= version) => Outcome::DeadLettered,
        _ => Outcome::Lost,
    })
}

/// What PostgreSQL and the dead-letter list hold against a ledger.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// Acknowledged writes in the ledger.
    pub acknowledged_writes: u64,
    /// Writes in the ledger whose answer was lost.
    pub unsure_writes: u64,
    /// Keys with an acknowledged write.
    pub checked: usize,
    /// Keys whose row holds their latest acknowledged write.
    pub ok: usize,
    /// Keys resolved by a dead letter of their latest acknowledged version or a newer one.
    pub dead_lettered: usize,
    /// Keys whose row holds a newer write whose answer was lost.
    pub overwritten_by_unacked: usize,
    /// Letters in the dead-letter list.
    pub dead_letters: usize,
    /// Keys whose latest acknowledged write is neither in PostgreSQL nor dead-lettered.
    pub lost: Vec<String>,
    /// Keys whose row is newer than the latest acknowledged write but holds an older one.
    pub older_over_newer: Vec<String>,
    /// Keys whose row holds a value no write carried at its version.
    pub corrupt: Vec<String>,
    /// Dead letters without the reason they failed.
    pub dead_letters_without_reason: Vec<String>,
}

/// Checks every acknowledged key of `ledger` against `rows` and `dead_letters`.
pub fn judge(ledger: &Ledger, rows: &Rows, dead_letters: &DeadLetters) -> Verdict {
    let mut v = Verdict {
        acknowledged_writes: ledger.acked_total,
        unsure_writes: ledger.unsure_total,
        dead_letters: dead_letters.total,
        dead_letters_without_reason: dead_letters.without_reason.clone(),
        ..Verdict::default()
    };
    for (id, log) in &ledger.keys {
        let row = rows.get(id);
        let dead_versions = dead_letters.versions.get(id).map_or(&[][..], Vec::as_slice);
        let Some(outcome) = classify(log, row, dead_versions) else { continue };
        v.checked += 1;
        let detail = || {
            let (version, write) = log.latest().expect("classified keys have an acknowledged write");
            format!("{id}: acked v{version} {write:?}, row {row:?}")
        };
        match outcome {
            Outcome::Ok => v.ok += 1,
            Outcome::DeadLettered => v.dead_lettered += 1,
            Outcome::OverwrittenByUnacked => v.overwritten_by_unacked += 1,
            Outcome::Lost => v.lost.push(detail()),
            Outcome::OlderOverNewer => v.older_over_newer.push(detail()),
            Outcome::Corrupt => v.corrupt.push(detail()),
        }
    }
    v
}

impl Verdict {
    /// The kinds of violation, each with its keys.
    fn kinds(&self) -> [(&'static str, &[String]); 4] {
        [
            ("lost", &self.lost),
            ("older-over-newer", &self.older_over_newer),
            ("corrupt", &self.corrupt),
            ("dead letters without reason", &self.dead_letters_without_reason),
        ]
    }

    /// The guarantees broken, one short phrase each; empty when all hold. A ledger without an
    /// acknowledged write breaks one too, since a verdict on nothing proves nothing.
    pub fn violations(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .kinds()
            .iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(what, keys)| format!("{what} {} (e.g. {})", keys.len(), keys[0]))
            .collect();
        if self.checked == 0 {
            out.push("no acknowledged write to check".into());
        }
        out
    }

    /// Whether every guarantee holds.
    pub fn holds(&self) -> bool {
        self.violations().is_empty()
    }

    /// The verdict for people: counts, then a few examples of each violation.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} acknowledged writes ({} unsure) over {} keys: {} ok, {} dead-lettered ({} letters), \
             {} overwritten by a write whose answer was lost\n",
            self.acknowledged_writes,
            self.unsure_writes,
            self.checked,
            self.ok,
            self.dead_lettered,
            self.dead_letters,
            self.overwritten_by_unacked
        );
        for (what, keys) in self.kinds() {
            out += &format!("{what:<28} {}\n", keys.len());
            keys.iter().take(EXAMPLES).for_each(|k| out += &format!("    {k}\n"));
        }
        let violations = self.violations();
        out += &if violations.is_empty() { "every guarantee holds".into() } else { violations.join("; ") };
        out
    }

    /// The verdict for programs: every field, `violations` and `holds`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).expect("a verdict is plain data");
        json["violations"] = self.violations().into();
        json["holds"] = self.holds().into();
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ledger::{Entry, Fields};

    fn fields(name: &str) -> Write {
        Some(Fields::new(name, 1.5, 2))
    }

    fn acked(id: &str, version: i64, fields: Write) -> Entry {
        Entry::Acked { id: id.into(), version, fields }
    }

    fn unsure(id: &str, fields: Write) -> Entry {
        Entry::Unsure { id: id.into(), fields, reason: "timeout".into() }
    }

    fn row(id: &str, version: i64, write: Write) -> (String, Row) {
        let (name, price, quantity, deleted) = match write {
            Some(f) => (f.name, f.price, f.quantity as i32, false),
            None => (String::new(), 0.0, 0, true),
        };
        (id.into(), Row { id: id.into(), name, price, quantity, version, deleted })
    }

    fn verdict(entries: Vec<Entry>, rows: Vec<(String, Row)>, letters: &[(&str, i64, &str)]) -> Verdict {
        let mut ledger = Ledger::default();
        entries.into_iter().for_each(|e| ledger.record(e));
        let letters = letters.iter().map(|(id, version, error)| crate::DeadLetter {
            id: (*id).into(),
            version: *version,
            deleted: true,
            value: None,
            error: (*error).into(),
            attempts: 1,
            failed_at_ms: 0,
        });
        judge(&ledger, &rows.into_iter().collect(), &DeadLetters::new(letters))
    }

    #[test]
    fn a_row_holding_the_latest_acknowledged_write_or_its_delete_is_ok() {
        let v = verdict(
            vec![acked("a", 1, fields("a1")), acked("a", 2, fields("a2")), acked("d", 3, None)],
            vec![row("a", 2, fields("a2")), row("d", 3, None)],
            &[],
        );
        assert_eq!((v.checked, v.ok), (2, 2));
        assert!(v.holds(), "{}", v.summary());
    }

    #[test]
    fn a_missing_row_or_a_row_older_than_the_acknowledged_write_is_lost() {
        let v = verdict(
            vec![acked("gone", 1, fields("g")), acked("old", 1, fields("o1")), acked("old", 2, fields("o2"))],
            vec![row("old", 1, fields("o1"))],
            &[],
        );
        assert_eq!(v.lost.len(), 2, "{}", v.summary());
        assert!(v.violations()[0].starts_with("lost 2"), "{:?}", v.violations());
    }

    #[test]
    fn a_newer_row_holding_an_older_acknowledged_write_is_older_over_newer() {
        let v = verdict(
            vec![acked("k", 1, fields("k1")), acked("k", 2, fields("k2"))],
            vec![row("k", 3, fields("k1"))],
            &[],
        );
        assert_eq!(v.older_over_newer.len(), 1, "{}", v.summary());
        assert!(!v.holds());
    }

    #[test]
    fn a_row_of_the_acknowledged_version_with_other_values_is_corrupt() {
        let mut other_price = fields("k");
        other_price.as_mut().unwrap().price = 1.6;
        let v = verdict(
            vec![acked("k", 2, fields("k")), acked("t", 2, None), acked("r", 2, None)],
            vec![row("k", 2, other_price), row("t", 2, fields("t")), row("r", 2, fields("r"))],
            &[],
        );
        assert_eq!(v.corrupt.len(), 3, "{}", v.summary());
    }

    #[test]
    fn a_newer_row_that_no_write_carried_is_corrupt() {
        let v =
            verdict(vec![acked("k", 1, fields("k1")), unsure("k", fields("k2"))], vec![row("k", 5, fields("x"))], &[]);
        assert_eq!(v.corrupt.len(), 1, "{}", v.summary());
    }

    #[test]
    fn a_newer_row_holding_a_write_whose_answer_was_lost_is_no_violation() {
        let v = verdict(vec![acked("k", 1, fields("k1")), unsure("k", None)], vec![row("k", 4, None)], &[]);
        assert_eq!(v.overwritten_by_unacked, 1);
        assert!(v.holds(), "{}", v.summary());
    }

    #[test]
    fn a_write_dead_lettered_at_its_version_or_a_newer_one_is_no_violation_but_an_older_letter_is_lost() {
        let v = verdict(
            vec![acked("same", 3, fields("s")), acked("newer", 3, fields("n")), acked("older", 3, fields("o"))],
            vec![],
            &[("same", 3, "23514: poison"), ("newer", 4, "23514: poison"), ("older", 2, "23514: poison")],
        );
        assert_eq!((v.dead_lettered, v.dead_letters), (2, 3));
        assert_eq!(v.lost.len(), 1, "{}", v.summary());
        assert!(v.lost[0].starts_with("older:"), "{:?}", v.lost);
    }

    #[test]
    fn a_dead_letter_without_its_reason_is_a_violation() {
        let v = verdict(vec![acked("k", 3, fields("k"))], vec![], &[("k", 3, "")]);
        assert_eq!(v.dead_letters_without_reason, vec!["k v3".to_owned()]);
        assert!(!v.holds());
    }

    #[test]
    fn a_ledger_without_an_acknowledged_write_proves_nothing_and_fails() {
        let v = verdict(vec![unsure("k", None)], vec![row("k", 1, None)], &[]);
        assert_eq!(v.checked, 0);
        assert_eq!(v.violations(), vec!["no acknowledged write to check".to_owned()]);
    }

    #[test]
    fn the_json_verdict_carries_the_counts_the_violations_and_whether_all_hold() {
        let json = verdict(vec![acked("k", 1, fields("k"))], vec![], &[]).to_json();
        assert_eq!(json["holds"], false);
        assert_eq!(json["checked"], 1);
        assert_eq!(json["lost"].as_array().unwrap().len(), 1);
        assert!(json["violations"][0].as_str().unwrap().starts_with("lost 1 (e.g. k: acked v1"), "{json}");
    }
}
