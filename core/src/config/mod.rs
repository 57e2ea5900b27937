//! Connection settings, and the clap parsers of bounded values that every binary's settings use.
use std::time::Duration;

mod store;
pub use store::StoreArgs;

/// A clap parser for a human duration (`500ms`, `2s`, `1m`) within `[min, max]`.
pub fn duration_in(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |raw: &str| {
        let d = humantime::parse_duration(raw.trim())
            .map_err(|e| format!("'{raw}' is not a duration like 500ms or 2s ({e})"))?;
        if d < min || d > max {
            return Err(format!(
                "{} is out of range {}..={}",
                humantime::format_duration(d),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(d)
    }
}

/// A clap parser for a finite number within `[min, max]`.
pub fn float_in(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |raw: &str| {
        let v: f64 = raw.trim().parse().map_err(|_| format!("'{raw}' is not a number"))?;
        if !v.is_finite() || v < min || v > max {
            return Err(format!("{raw} is out of range {min}..={max}"));
        }
        Ok(v)
    }
}
