//! The failure budget's bucket: the generic cell rate algorithm (as governor's and
//! the Redis scripts'), with what governor's limiters do not offer: how much room
//! is left, asked without spending it. Admitted attempts hold room until they are
//! settled, so the budget is never overshot while PINs are being checked.

use std::time::{Duration, Instant};

use crate::config::Rate;

/// One bucket of `rate.count` cells, refilled one per `rate.per / rate.count`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gcra {
    /// The theoretical arrival time: when the bucket is full again.
    tat: Option<Instant>,
}

fn interval(rate: Rate) -> Duration {
    (rate.per / rate.count.get()).max(Duration::from_nanos(1))
}

impl Gcra {
    /// Cells that may be spent at `now`.
    pub fn room(&self, rate: Rate, now: Instant) -> u64 {
        let used = self.tat.map_or(Duration::ZERO, |tat| tat.saturating_duration_since(now));
        let left = rate.per.saturating_sub(used);
        u64::try_from(left.as_nanos() / interval(rate).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Spend one cell; `false` (and nothing spent) when there is no room.
    pub fn spend(&mut self, rate: Rate, now: Instant) -> bool {
        if self.room(rate, now) == 0 {
            return false;
        }
        let from = self.tat.map_or(now, |tat| tat.max(now));
        self.tat = Some(from + interval(rate));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_its_count_and_refills_one_cell_per_interval() {
        let rate: Rate = "4/min".parse().unwrap();
        let start = Instant::now();
        let mut bucket = Gcra::default();
        assert_eq!(bucket.room(rate, start), 4);
        for left in (0..4).rev() {
            assert!(bucket.spend(rate, start));
            assert_eq!(bucket.room(rate, start), left);
        }
        assert!(!bucket.spend(rate, start), "empty");
        assert_eq!(bucket.room(rate, start + Duration::from_secs(14)), 0);
        assert_eq!(bucket.room(rate, start + Duration::from_secs(15)), 1, "one cell per 15 s");
        assert_eq!(bucket.room(rate, start + Duration::from_secs(600)), 4, "never more than the count");
    }
}
