//! Exponential backoff with full jitter.
use std::time::Duration;

use rand::Rng;

/// Delay before retry number `attempt` (0-based): uniform in `[0, min(max, initial * multiplier^attempt)]`.
pub fn delay(initial: Duration, max: Duration, multiplier: f64, attempt: u32) -> Duration {
    let ceiling = initial.as_secs_f64() * multiplier.powi(attempt.min(64) as i32);
    let ceiling = ceiling.min(max.as_secs_f64());
    Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_but_stay_under_the_cap() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..100 {
            let d = delay(initial, max, 2.0, attempt);
            let ceiling = (0.1 * 2f64.powi(attempt as i32)).min(2.0);
            assert!(d.as_secs_f64() <= ceiling + 1e-9, "attempt {attempt}: {d:?} over {ceiling}");
        }
        let late: f64 = (0..200).map(|_| delay(initial, max, 2.0, 10).as_secs_f64()).sum::<f64>() / 200.0;
        assert!(late > 0.5, "mean delay {late} does not reach toward the 2s cap");
    }
}
