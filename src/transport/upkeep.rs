//! One grid for keypin's periodic upkeep: the secrets file's poll, the watch of
//! the configuration and certificate files, the backend's probe.
//!
//! Each such task ticks at whole multiples of its period on the wall clock, so
//! tasks of periods of one and two seconds wake the runtime together, once a
//! second, instead of each at a phase of its own. A wake of an idle thread is
//! not free (caches gone cold, a context switch): on a core shared with a
//! worker each takes time from requests (docs/benchmarks.md, the seventh round).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// An interval that ticks every `period`, first at the next whole multiple of
/// `period` since the Unix epoch. A tick missed (a busy thread) is skipped, so
/// the ticks stay on the grid. Panics if `period` is zero, as tokio's intervals do.
pub fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + until_next(period, SystemTime::now()), period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    interval
}

/// The time from `now` to the next whole multiple of `period` since the epoch,
/// at least a nanosecond (the full `period` when `now` sits on the grid); the
/// full `period` for a clock before the epoch or a zero `period`.
fn until_next(period: Duration, now: SystemTime) -> Duration {
    let (Ok(since), Ok(period_ns)) = (now.duration_since(UNIX_EPOCH), u64::try_from(period.as_nanos())) else {
        return period;
    };
    if period_ns == 0 {
        return period;
    }
    let into = u64::try_from(since.as_nanos() % u128::from(period_ns)).unwrap_or(0);
    Duration::from_nanos(period_ns - into)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::until_next;

    #[test]
    fn the_next_tick_is_on_the_grid() {
        let second = Duration::from_secs(1);
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(until_next(second, at(10_250)), Duration::from_millis(750));
        assert_eq!(until_next(second * 2, at(10_250)), Duration::from_millis(1_750));
        assert_eq!(until_next(second * 2, at(11_250)), Duration::from_millis(750));
        assert_eq!(until_next(second, at(10_000)), second, "on the grid: the next point, not now");
        assert_eq!(until_next(Duration::ZERO, at(10_250)), Duration::ZERO);
        assert_eq!(until_next(second, UNIX_EPOCH - second), second, "a clock before the epoch");
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256))]

        /// Periods of one and two seconds meet: from any moment, each next tick of the
        /// longer period is a tick of the shorter one.
        #[test]
        fn ticks_of_whole_second_periods_fall_together(ns in 0u64..u64::MAX / 2, k in 1u32..5) {
            let now = UNIX_EPOCH + Duration::from_nanos(ns);
            let short = Duration::from_secs(1);
            let long = short * k;
            let first_long = until_next(long, now);
            let first_short = until_next(short, now);
            prop_assert!(first_short <= first_long && first_long <= long && first_short > Duration::ZERO);
            prop_assert_eq!((first_long - first_short).as_nanos() % short.as_nanos(), 0);
        }
    }
}
