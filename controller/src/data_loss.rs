//! Losses of Redis data, as the target pods report them from PostgreSQL's durable record, become
//! `status.dataLoss` and one Warning event per newly detected loss. The status remembers what was
//! announced, so a restarted controller announces nothing twice.
use k8s_openapi::jiff::Timestamp;
use wbc_core::db::DataLosses;

use crate::crd::DataLossStatus;

/// What the status says after a probe, and the note of the event that announces a new loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub status: Option<DataLossStatus>,
    pub news: Option<String>,
}

/// Compares what the pods `reported` with what the status says (`previous`). Nothing reported (no pod
/// answered, or none could read PostgreSQL) keeps the status. The status follows the record, also
/// when it shrinks (a new database); a loss is new when the count grows or a later one is recorded.
pub fn observe(previous: Option<&DataLossStatus>, reported: Option<&DataLosses>) -> Observed {
    let Some(reported) = reported else {
        return Observed { status: previous.cloned(), news: None };
    };
    if reported.count == 0 {
        return Observed { status: None, news: None };
    }
    let detected_at = reported.last_detected_at_ms.and_then(|ms| Timestamp::from_millisecond(ms as i64).ok());
    let status = DataLossStatus {
        count: reported.count,
        last_detected_at: detected_at.map(|t| t.to_string()),
        at_least_writes: reported.at_least_writes,
    };
    let before = |p: &DataLossStatus| p.last_detected_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let new = previous.is_none_or(|p| reported.count > p.count || detected_at > before(p));
    let news = new.then(|| note(previous, &status));
    Observed { status: Some(status), news }
}

/// The event's note: how many losses are new, when the last was detected, and what was forgotten.
fn note(previous: Option<&DataLossStatus>, now: &DataLossStatus) -> String {
    let (count, writes) = previous.map_or((0, 0), |p| (p.count, p.at_least_writes));
    let new = now.count.saturating_sub(count).max(1);
    let losses = if new == 1 { "a loss".to_owned() } else { format!("{new} losses") };
    let at = now.last_detected_at.as_deref().unwrap_or("an unrecorded time");
    let forgotten = now.at_least_writes.saturating_sub(writes);
    format!(
        "Redis lost data: {losses} detected (the last at {at}; {} so far); Redis forgot at least {forgotten} \
         writes, and those not yet persisted to PostgreSQL are gone",
        now.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(count: u64, at_ms: u64, at_least_writes: u64) -> DataLosses {
        DataLosses { count, last_detected_at_ms: Some(at_ms), at_least_writes }
    }

    #[test]
    fn a_first_loss_is_news_with_its_time_and_lower_bound_and_the_same_record_is_not() {
        let first = observe(None, Some(&reported(1, 1_700_000_000_123, 3)));
        let status = first.status.clone().unwrap();
        assert_eq!(status.last_detected_at.as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!((status.count, status.at_least_writes), (1, 3));
        let note = first.news.unwrap();
        assert!(note.contains("a loss detected (the last at 2023-11-14T22:13:20.123Z; 1 so far)"), "{note}");
        assert!(note.contains("at least 3 writes"), "{note}");
        let again = observe(Some(&status), Some(&reported(1, 1_700_000_000_123, 3)));
        assert_eq!(again, Observed { status: Some(status), news: None });
    }

    #[test]
    fn losses_found_between_two_probes_are_one_event_that_counts_them() {
        let first = observe(None, Some(&reported(1, 1_000, 3))).status;
        let next = observe(first.as_ref(), Some(&reported(3, 9_000, 10)));
        let note = next.news.unwrap();
        assert!(note.contains("2 losses detected") && note.contains("3 so far"), "{note}");
        assert!(note.contains("at least 7 writes"), "{note}");
    }

    #[test]
    fn no_report_keeps_the_status_and_a_new_database_is_followed() {
        let status = observe(None, Some(&reported(2, 5_000, 4))).status;
        assert_eq!(observe(status.as_ref(), None), Observed { status: status.clone(), news: None });
        let fresh = DataLosses::default();
        assert_eq!(observe(status.as_ref(), Some(&fresh)), Observed { status: None, news: None });
        // a new database that already saw a later loss: fewer in all, but a new one
        let later = observe(status.as_ref(), Some(&reported(1, 6_000, 1)));
        assert!(later.news.is_some());
        assert_eq!(observe(None, Some(&fresh)), Observed { status: None, news: None });
    }
}
