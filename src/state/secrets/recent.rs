//! The secret cache's answers of the last second, in front of it. A session's
//! every request asks for the same name, and moka's read bookkeeping (frequency
//! sketch, read log, housekeeping) cost 3 % of a proxied request; a copy of the
//! answer in a slot of its own costs a hash and a lock.
//!
//! Direct-mapped: a hash seeded at random picks one slot per name, and a newer
//! name takes the slot of an older one. An answer is kept at most [`KEEP_FOR`],
//! never past the expiry of the cache entry it copies, and never across a change
//! of the store's generation (a re-read file): it says nothing the cache itself
//! would not say at that moment.

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::store::SecretName;

/// Longest an answer is kept here.
pub const KEEP_FOR: Duration = Duration::from_secs(1);
/// Slots: names answered at once from here, at most.
const SLOTS: usize = 1024;

pub struct RecentAnswers<V> {
    hasher: foldhash::quality::RandomState,
    slots: Box<[Mutex<Option<Kept<V>>>]>,
}

struct Kept<V> {
    name: SecretName,
    value: V,
    until: Instant,
    generation: u64,
}

impl<V: Clone> RecentAnswers<V> {
    pub fn new() -> Self {
        Self { hasher: Default::default(), slots: (0..SLOTS).map(|_| Mutex::new(None)).collect() }
    }

    fn slot(&self, name: &SecretName) -> &Mutex<Option<Kept<V>>> {
        &self.slots[(self.hasher.hash_one(&name.0) % SLOTS as u64) as usize]
    }

    /// The answer kept for `name` under the store's `generation`, if still good
    /// at `now`.
    pub fn get(&self, name: &SecretName, generation: u64, now: Instant) -> Option<V> {
        let slot = self.slot(name).lock();
        let kept = slot.as_ref()?;
        (kept.generation == generation && now < kept.until && kept.name == *name).then(|| kept.value.clone())
    }

    /// Keep `value` for `name` until `expires` (the cache entry's end) or for
    /// [`KEEP_FOR`] from `now`, whichever comes first.
    pub fn keep(&self, name: &SecretName, value: V, generation: u64, now: Instant, expires: Instant) {
        let until = expires.min(now + KEEP_FOR);
        *self.slot(name).lock() = Some(Kept { name: name.clone(), value, until, generation });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> SecretName {
        SecretName(n.to_owned())
    }

    #[test]
    fn an_answer_holds_for_its_name_and_generation_until_the_first_end() {
        let recent = RecentAnswers::new();
        let t = Instant::now();
        recent.keep(&name("secret-a"), 7, 1, t, t + Duration::from_secs(60));
        assert_eq!(recent.get(&name("secret-a"), 1, t), Some(7));
        assert_eq!(recent.get(&name("secret-a"), 1, t + KEEP_FOR - Duration::from_millis(1)), Some(7));
        assert_eq!(recent.get(&name("secret-a"), 1, t + KEEP_FOR), None, "kept one second at most");
        assert_eq!(recent.get(&name("secret-a"), 2, t), None, "the store changed");
        assert_eq!(recent.get(&name("secret-b"), 1, t), None, "another name");

        // Never past the cache entry it copies.
        recent.keep(&name("secret-a"), 8, 1, t, t + Duration::from_millis(10));
        assert_eq!(recent.get(&name("secret-a"), 1, t + Duration::from_millis(9)), Some(8));
        assert_eq!(recent.get(&name("secret-a"), 1, t + Duration::from_millis(10)), None);
    }

    #[test]
    fn a_name_that_takes_a_slot_never_answers_for_another() {
        let recent = RecentAnswers::new();
        let t = Instant::now();
        let far = t + Duration::from_secs(60);
        for i in 0..4 * SLOTS {
            recent.keep(&name(&format!("secret-{i}")), i, 1, t, far);
        }
        for i in 0..4 * SLOTS {
            // Each name answers with its own value, or not at all (its slot was
            // taken by a later name).
            assert!(recent.get(&name(&format!("secret-{i}")), 1, t).is_none_or(|v| v == i));
        }
        assert_eq!(recent.get(&name(&format!("secret-{}", 4 * SLOTS - 1)), 1, t), Some(4 * SLOTS - 1));
    }
}
