//! Exponential backoff with full jitter, as the pipeline's `RETRY_*` settings describe it.
use std::time::Duration;

use rand::Rng;
use wbc_core::Pipeline;

/// The retry delays of failed flushes and of records retried alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
}

impl RetryPolicy {
    /// The policy of a pipeline's `RETRY_INITIAL_DELAY`, `RETRY_MAX_DELAY` and `RETRY_MULTIPLIER`.
    pub fn of(p: &Pipeline) -> Self {
        Self { initial: p.retry.initial_delay, max: p.retry.max_delay, multiplier: p.retry.multiplier }
    }

    /// Delay before retry number `attempt` (0-based): uniform in `[0, min(max, initial * multiplier^attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        let ceiling = ceiling.min(self.max.as_secs_f64());
        Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_but_stay_under_the_cap() {
        let policy = RetryPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(2), multiplier: 2.0 };
        for attempt in 0..100 {
            let d = policy.delay(attempt);
            let ceiling = (0.1 * 2f64.powi(attempt as i32)).min(2.0);
            assert!(d.as_secs_f64() <= ceiling + 1e-9, "attempt {attempt}: {d:?} over {ceiling}");
        }
        let late: f64 = (0..200).map(|_| policy.delay(10).as_secs_f64()).sum::<f64>() / 200.0;
        assert!(late > 0.5, "mean delay {late} does not reach toward the 2s cap");
    }
}
