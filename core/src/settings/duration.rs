//! Durations as the resource's spec writes them: human strings such as `500ms` or `1m30s`.
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

/// What the CRD's schema accepts as a duration: integers with units, e.g. 500ms, 2s, 1m30s, 1h.
pub const PATTERN: &str = r"^\s*([0-9]+\s*(ns|us|ms|s|m|h|d)\s*)+$";

/// Writes `d` as humantime does (`1m 30s`), the spelling the ConfigMap has always had.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// Reads a human duration. A number too large for a `Duration` becomes the largest one, so that the
/// range check refuses it by the field's name: a resource the controller could not even read would
/// stall its whole watch.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = String::deserialize(d)?;
    match humantime::parse_duration(raw.trim()) {
        Ok(d) => Ok(d),
        Err(humantime::DurationError::NumberOverflow) => Ok(Duration::MAX),
        Err(e) => Err(D::Error::custom(format!("'{raw}' is not a duration like 500ms or 2s ({e})"))),
    }
}
