//! Connection settings, and the clap parsers of bounded values that every binary's settings use.
use std::time::Duration;

use clap::Args;

/// Connections to Redis and PostgreSQL.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Redis URL holding the cache and the write queue.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// PostgreSQL URL of the system of record.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://wbc@127.0.0.1:5432/wbc")]
    pub database_url: String,
    /// Largest number of PostgreSQL connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
}

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
