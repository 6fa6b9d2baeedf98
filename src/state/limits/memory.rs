//! Limiter state in this process: per-client and global login rates (governor, with
//! per-client state in a bounded LRU cache), failure streaks per client key and per
//! device, lockouts, and the attack-mode failure budget.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use moka::ops::compute::Op;
use parking_lot::Mutex;

use super::client::ClientKey;
use super::gcra::Gcra;
use super::store::{
    AttackMode, Attempt, FailureOutcome, IN_FLIGHT_WAIT, LOCKOUT_MEMORY, LimitStore, Lockout, Refusal, StoreHealth,
    Verdict, lockout_duration,
};
use crate::config::{LimitsConfig, Rate};
use crate::state::secrets::BoxFuture;

/// Most client keys whose rate or lockout state is kept (LRU beyond that).
pub const MAX_TRACKED_CLIENTS: u64 = 100_000;

/// governor state keyed by client in a bounded LRU cache.
struct BoundedKeyedState {
    cells: moka::sync::Cache<ClientKey, u64>,
}

impl StateStore for BoundedKeyedState {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // The entry is computed under its lock: concurrent attempts are serialized
        // per key, so a limit cannot be overshot.
        let mut outcome = None;
        self.cells.entry(*key).and_compute_with(|old| {
            let (op, result) = match f(old.map(|e| Nanos::from(e.into_value()))) {
                Ok((value, next)) => (Op::Put(u64::from(next)), Ok(value)),
                Err(e) => (Op::Nop, Err(e)),
            };
            outcome = Some(result);
            op
        });
        outcome.expect("the compute closure ran")
    }
}

type KeyedLimiter = RateLimiter<ClientKey, BoundedKeyedState, DefaultClock, NoOpMiddleware>;
type GlobalLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware>;

/// Whose failure streak: a client key or a known device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum StreakKey {
    Client(ClientKey),
    Device(String),
}

#[derive(Debug, Clone, Copy, Default)]
struct Streak {
    failures: u32,
    lockouts: u32,
    locked_until: Option<Instant>,
}

/// Admitted attempts not settled yet (each may still be a failure), per client
/// key and device and in all; only keys with some in flight have an entry.
#[derive(Debug, Default)]
struct InFlight {
    by_key: HashMap<StreakKey, u32>,
    all: u64,
}

/// Attack mode's clock: on until `until`.
#[derive(Debug, Default)]
struct Attack {
    until: Option<Instant>,
    /// Failures over budget since it went on.
    failures: u64,
}

/// The failure budget of all clients together; exhausting it means attack mode.
#[derive(Debug)]
struct Budget {
    rate: Rate,
    bucket: Gcra,
}

/// The parts of the state that survive a reconfiguration.
#[derive(Clone)]
struct State {
    cells: moka::sync::Cache<ClientKey, u64>,
    streaks: moka::sync::Cache<StreakKey, Streak>,
    attack: Arc<Mutex<Attack>>,
    /// Login attempts of all clients together, under the rate it was built for.
    global: (Rate, Arc<GlobalLimiter>),
    budget: Arc<Mutex<Budget>>,
    /// Held while an attempt is admitted or settled: the checks and the
    /// reservations of one attempt are one step.
    in_flight: Arc<Mutex<InFlight>>,
    next_id: Arc<AtomicU64>,
    clock: DefaultClock,
}

/// Limiter state in this process.
pub struct MemoryLimitStore {
    per_client: KeyedLimiter,
    state: State,
    config: LimitsConfig,
}

/// A limiter for `rate`: the one `kept` when it was built for the same rate (a
/// reload must not hand out a fresh budget), else a new one.
fn global_limiter(
    rate: Rate,
    kept: Option<&(Rate, Arc<GlobalLimiter>)>,
    clock: &DefaultClock,
) -> (Rate, Arc<GlobalLimiter>) {
    match kept {
        Some((was, limiter)) if *was == rate => (rate, limiter.clone()),
        _ => (rate, Arc::new(RateLimiter::direct_with_clock(quota(rate), clock.clone()))),
    }
}

fn quota(rate: Rate) -> Quota {
    let period = rate.per / rate.count.get();
    Quota::with_period(period.max(Duration::from_nanos(1))).expect("a positive period").allow_burst(rate.count)
}

impl MemoryLimitStore {
    pub fn new(config: &LimitsConfig) -> Self {
        // A key's GCRA state is back to fresh one whole period after its last use.
        let cells = moka::sync::Cache::builder()
            .max_capacity(MAX_TRACKED_CLIENTS)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_idle(config.login_per_ip.per)
            .build();
        let streaks = moka::sync::Cache::builder()
            .max_capacity(MAX_TRACKED_CLIENTS)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_idle(LOCKOUT_MEMORY.max(config.lockout_max))
            .build();
        let clock = DefaultClock::default();
        let budget = Budget { rate: config.attack_failures, bucket: Gcra::default() };
        let state = State {
            cells,
            streaks,
            attack: Arc::default(),
            global: global_limiter(config.login_global, None, &clock),
            budget: Arc::new(Mutex::new(budget)),
            in_flight: Arc::default(),
            next_id: Arc::default(),
            clock,
        };
        Self::with_state(config, state)
    }

    /// The limiters of `config` over `state`; the global limit and the failure
    /// budget carry over when their rates are unchanged.
    fn with_state(config: &LimitsConfig, mut state: State) -> Self {
        state.global = global_limiter(config.login_global, Some(&state.global), &state.clock);
        {
            let mut budget = state.budget.lock();
            if budget.rate != config.attack_failures {
                budget.rate = config.attack_failures;
                budget.bucket = Gcra::default();
            }
        }
        Self {
            per_client: RateLimiter::new(
                quota(config.login_per_ip),
                BoundedKeyedState { cells: state.cells.clone() },
                state.clock.clone(),
            ),
            state,
            config: config.clone(),
        }
    }

    fn wait(&self, not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Duration {
        not_until.wait_time_from(self.state.clock.now())
    }

    /// How many keys the per-client limiter tracks now (for the memory bench).
    pub fn tracked_keys(&self) -> u64 {
        self.state.cells.run_pending_tasks();
        self.state.cells.entry_count()
    }

    /// Why `key` may not try now: locked out, or as many attempts in flight as
    /// failures it has left before a lockout.
    fn streak_refusal(&self, key: &StreakKey, in_flight: &InFlight, now: Instant) -> Option<Duration> {
        let s = self.state.streaks.get(key).unwrap_or_default();
        if let Some(until) = s.locked_until.filter(|until| *until > now) {
            return Some(until - now);
        }
        let after = self.config.lockout_after;
        let failures = if s.locked_until.is_some() { 0 } else { s.failures };
        let pending = in_flight.by_key.get(key).copied().unwrap_or(0);
        (after > 0 && failures + pending >= after).then_some(IN_FLIGHT_WAIT)
    }

    /// Every check of one attempt, in order; called with the in-flight table held.
    fn check(&self, key: ClientKey, device: Option<&str>, in_flight: &InFlight, now: Instant) -> Result<(), Refusal> {
        if let AttackMode::On(left) = self.attack_now(now, false)
            && device.is_none()
        {
            return Err(Refusal::AttackMode(left));
        }
        if let Some(wait) = streak_keys(key, device).filter_map(|k| self.streak_refusal(&k, in_flight, now)).max() {
            return Err(Refusal::Wait(wait));
        }
        if device.is_none() {
            // One more than the room may be in flight: the failure that finds the
            // budget spent is the one that starts attack mode.
            let budget = self.state.budget.lock();
            if in_flight.all > budget.bucket.room(budget.rate, now) {
                return Err(Refusal::Wait(IN_FLIGHT_WAIT));
            }
        }
        self.per_client.check_key(&key).map_err(|nu| Refusal::Wait(self.wait(&nu)))?;
        self.state.global.1.check().map_err(|nu| Refusal::Wait(self.wait(&nu)))
    }

    /// One more failure for `key`; the lockout it starts, if any.
    fn extend_streak(&self, key: StreakKey, now: Instant) -> Option<Lockout> {
        let (after, base, max) = (self.config.lockout_after, self.config.lockout_base, self.config.lockout_max);
        let mut started = None;
        self.state.streaks.entry(key).and_compute_with(|old| {
            let mut s = old.map(|e| e.into_value()).unwrap_or_default();
            if s.locked_until.is_some_and(|until| until <= now) {
                s.locked_until = None;
                s.failures = 0;
            }
            s.failures += 1;
            if after > 0 && s.failures >= after {
                s.lockouts += 1;
                s.failures = 0;
                let duration = lockout_duration(s.lockouts, base, max);
                s.locked_until = Some(now + duration);
                started = Some(Lockout { duration });
            }
            Op::Put(s)
        });
        started
    }

    /// A failure spends the budget; over it, attack mode starts or goes on.
    fn spend_budget(&self, now: Instant) -> bool {
        let spent = {
            let mut budget = self.state.budget.lock();
            let rate = budget.rate;
            budget.bucket.spend(rate, now)
        };
        if spent {
            return false;
        }
        // Over budget: attack mode, extended for as long as failures continue.
        let mut attack = self.state.attack.lock();
        let started = attack.until.is_none_or(|until| until <= now);
        if started {
            attack.failures = 0;
        }
        attack.failures += 1;
        attack.until = Some(now + self.config.attack_cooldown);
        started
    }

    /// Attack mode at `now`; `report` consumes its end.
    fn attack_now(&self, now: Instant, report: bool) -> AttackMode {
        let mut attack = self.state.attack.lock();
        match attack.until {
            Some(until) if until > now => AttackMode::On(until - now),
            Some(_) if report => {
                attack.until = None;
                AttackMode::Ended { failures: std::mem::take(&mut attack.failures) }
            }
            _ => AttackMode::Off,
        }
    }
}

fn streak_keys(client: ClientKey, device: Option<&str>) -> impl Iterator<Item = StreakKey> + '_ {
    std::iter::once(StreakKey::Client(client)).chain(device.map(|d| StreakKey::Device(d.to_owned())))
}

impl LimitStore for MemoryLimitStore {
    fn admit_attempt<'a>(&'a self, key: ClientKey, device: Option<&'a str>) -> BoxFuture<'a, Result<Attempt, Refusal>> {
        let now = Instant::now();
        let mut in_flight = self.state.in_flight.lock();
        let result = self.check(key, device, &in_flight, now).map(|()| {
            for k in streak_keys(key, device) {
                *in_flight.by_key.entry(k).or_default() += 1;
            }
            in_flight.all += 1;
            let id = self.state.next_id.fetch_add(1, Ordering::Relaxed).to_string();
            Attempt { key, device: device.map(str::to_owned), id }
        });
        Box::pin(std::future::ready(result))
    }

    fn settle(&self, attempt: Attempt, verdict: Verdict) -> BoxFuture<'_, FailureOutcome> {
        let now = Instant::now();
        let mut in_flight = self.state.in_flight.lock();
        let device = attempt.device.as_deref();
        for k in streak_keys(attempt.key, device) {
            if let Entry::Occupied(mut held) = in_flight.by_key.entry(k) {
                *held.get_mut() -= 1;
                if *held.get() == 0 {
                    held.remove();
                }
            }
        }
        in_flight.all = in_flight.all.saturating_sub(1);
        let outcome = match verdict {
            Verdict::Failed => FailureOutcome {
                client_lockout: self.extend_streak(StreakKey::Client(attempt.key), now),
                device_lockout: device.and_then(|d| self.extend_streak(StreakKey::Device(d.to_owned()), now)),
                attack_mode_started: self.spend_budget(now),
            },
            Verdict::Succeeded | Verdict::Unanswered => FailureOutcome::default(),
        };
        Box::pin(std::future::ready(outcome))
    }

    fn attack_mode(&self) -> AttackMode {
        self.attack_now(Instant::now(), true)
    }

    fn active_lockouts(&self) -> u64 {
        let now = Instant::now();
        self.state.streaks.iter().filter(|(_, s)| s.locked_until.is_some_and(|u| u > now)).count() as u64
    }

    fn share_revocation(&self, _id: &str, _until: u64) {}

    fn health(&self) -> StoreHealth {
        StoreHealth::Memory
    }

    fn reconfigure(&self, config: &LimitsConfig) -> Arc<dyn LimitStore> {
        Arc::new(Self::with_state(config, self.state.clone()))
    }
}

#[cfg(test)]
pub(super) mod tests;
