//! Redis's clock as this process knows it. A write carries a deadline in Redis time, past which
//! Redis refuses to apply it, and the process learns when that deadline has certainly passed, so
//! that a write it gave up on can never apply later. The offset between the process's monotonic
//! clock and Redis `TIME` is measured with a round trip, whose length bounds its error, and is
//! allowed to drift at a rate far above what real clocks do. What it cannot survive is Redis's
//! clock stepping back in between (an operator setting the time back); see the README.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;

use crate::Result;

/// The drift allowed between the two clocks, in parts per million: ten times what a free-running
/// quartz clock drifts, and NTP keeps both far closer.
const DRIFT_PPM: i64 = 1_000;
/// Added to every bound, for the clocks' granularity.
const SLACK_US: i64 = 1_000;
/// A measurement older than this is repeated in the background.
const REFRESH_AFTER: Duration = Duration::from_secs(10);

/// Redis time minus local time, within `[lo, hi]` microseconds, as measured at local time `at`.
#[derive(Clone, Copy, Debug)]
struct Offset {
    at_us: i64,
    lo: i64,
    hi: i64,
}

impl Offset {
    /// The error this measurement has at local time `now`.
    fn drift(&self, now_us: i64) -> i64 {
        (now_us - self.at_us).abs() * DRIFT_PPM / 1_000_000 + SLACK_US
    }
}

/// Redis's clock, relative to this process's monotonic clock.
pub(crate) struct RedisClock {
    origin: Instant,
    offset: Mutex<Offset>,
    refreshing: AtomicBool,
}

impl RedisClock {
    /// Measures the offset once; the first use of a Redis connection.
    pub(crate) async fn measure(conn: &mut ConnectionManager) -> Result<Self> {
        let origin = Instant::now();
        let offset = sample(origin, conn).await?;
        Ok(Self { origin, offset: Mutex::new(offset), refreshing: AtomicBool::new(false) })
    }

    fn local_us(&self, t: Instant) -> i64 {
        t.saturating_duration_since(self.origin).as_micros() as i64
    }

    fn offset(&self) -> Offset {
        *self.offset.lock().expect("clock lock")
    }

    /// The latest Redis time it can be now, in Unix microseconds.
    pub(crate) fn now_us_at_most(&self) -> i64 {
        let now = self.local_us(Instant::now());
        let o = self.offset();
        now + o.hi + o.drift(now)
    }

    /// A deadline `budget` from now in Redis time, and the local instant by which Redis's clock
    /// has certainly passed it.
    pub(crate) fn deadline(&self, budget: Duration) -> (i64, Instant) {
        let now = self.local_us(Instant::now());
        let o = self.offset();
        let deadline = now + o.hi + o.drift(now) + budget.as_micros() as i64;
        // The first local time t at which even the earliest Redis time, t + lo - drift(t), is past
        // the deadline.
        let target = deadline - o.lo + SLACK_US;
        let passed = target + (target - o.at_us).max(0) * DRIFT_PPM / (1_000_000 - DRIFT_PPM) + 1;
        (deadline, self.origin + Duration::from_micros(passed.max(0) as u64))
    }

    /// Measures again in the background once the last measurement is old; a new one replaces
    /// it only if it is at least as precise as the old one is by now.
    pub(crate) fn refresh_if_old(self: &Arc<Self>, conn: &ConnectionManager) {
        let o = self.offset();
        let now = self.local_us(Instant::now());
        if now - o.at_us < REFRESH_AFTER.as_micros() as i64 || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (clock, mut conn) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            if let Ok(new) = sample(clock.origin, &mut conn).await {
                let mut offset = clock.offset.lock().expect("clock lock");
                if new.hi - new.lo <= offset.hi - offset.lo + 2 * offset.drift(new.at_us) {
                    *offset = new;
                }
            }
            clock.refreshing.store(false, Ordering::Release);
        });
    }
}

/// One round trip of `TIME`: Redis read its clock somewhere between sending and receiving.
async fn sample(origin: Instant, conn: &mut ConnectionManager) -> Result<Offset> {
    let sent = origin.elapsed().as_micros() as i64;
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
    let received = origin.elapsed().as_micros() as i64;
    let redis_us = secs * 1_000_000 + micros;
    Ok(Offset { at_us: received, lo: redis_us - received, hi: redis_us - sent })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(lo: i64, hi: i64) -> RedisClock {
        RedisClock {
            origin: Instant::now(),
            offset: Mutex::new(Offset { at_us: 0, lo, hi }),
            refreshing: AtomicBool::new(false),
        }
    }

    #[test]
    fn a_deadline_has_certainly_passed_by_its_give_up_time_in_redis_time() {
        // Redis is 5 s ahead, known to within 2 ms.
        let c = clock(5_000_000, 5_002_000);
        let (deadline, give_up) = c.deadline(Duration::from_secs(2));
        let at = c.local_us(give_up);
        let earliest_redis = at + 5_000_000 - (at * DRIFT_PPM / 1_000_000 + SLACK_US);
        assert!(earliest_redis > deadline, "{earliest_redis} <= {deadline}");
        // And not much later than the budget plus the uncertainty.
        assert!(at < 2_010_000, "gave up at {at}");
    }
}
