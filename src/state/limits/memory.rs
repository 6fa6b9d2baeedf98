//! Limiter state in this process: per-client and global login rates (governor, with
//! per-client state in a bounded LRU cache), failure streaks per client key and per
//! device, lockouts, and the attack-mode failure budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use moka::ops::compute::Op;

use super::client::ClientKey;
use super::store::{AttackMode, FailureOutcome, LimitStore, Lockout, lockout_duration};
use crate::config::{LimitsConfig, Rate};
use crate::state::secrets::BoxFuture;

/// Most client keys whose rate or lockout state is kept (LRU beyond that).
pub const MAX_TRACKED_CLIENTS: u64 = 100_000;
/// A lockout streak is forgotten after this long without failures.
const LOCKOUT_MEMORY: Duration = Duration::from_secs(24 * 3600);

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

/// Attack mode's clock: on until `until`.
#[derive(Debug, Default)]
struct Attack {
    until: Option<Instant>,
    /// Failures over budget since it went on.
    failures: u64,
}

/// The parts of the state that survive a reconfiguration.
#[derive(Clone)]
struct State {
    cells: moka::sync::Cache<ClientKey, u64>,
    streaks: moka::sync::Cache<StreakKey, Streak>,
    attack: Arc<parking_lot::Mutex<Attack>>,
    /// Login attempts of all clients together, under the rate it was built for.
    global: (Rate, Arc<GlobalLimiter>),
    /// Failures of all clients together; exhausting it means attack mode.
    failure_budget: (Rate, Arc<GlobalLimiter>),
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
        let state = State {
            cells,
            streaks,
            attack: Arc::default(),
            global: global_limiter(config.login_global, None, &clock),
            failure_budget: global_limiter(config.attack_failures, None, &clock),
            clock,
        };
        Self::with_state(config, state)
    }

    /// The limiters of `config` over `state`; the global limiters carry over when
    /// their rates are unchanged.
    fn with_state(config: &LimitsConfig, mut state: State) -> Self {
        state.global = global_limiter(config.login_global, Some(&state.global), &state.clock);
        state.failure_budget = global_limiter(config.attack_failures, Some(&state.failure_budget), &state.clock);
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

    /// Time left on the lockout of `key`, if it is locked.
    fn locked(&self, key: &StreakKey, now: Instant) -> Option<Duration> {
        self.state.streaks.get(key)?.locked_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// One more failure for `key`; the lockout it starts, if any.
    fn extend_streak(&self, key: StreakKey, now: Instant) -> Option<Lockout> {
        let (after, base, max) = (self.config.lockout_after, self.config.lockout_base, self.config.lockout_max);
        let mut started = None;
        self.state.streaks.entry(key).and_compute_with(|old| {
            let mut s = old.map(|e| e.into_value()).unwrap_or_default();
            if s.locked_until.is_some_and(|until| until <= now) {
                s.locked_until = None;
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
}

fn keys(client: ClientKey, device: Option<&str>) -> impl Iterator<Item = StreakKey> + '_ {
    std::iter::once(StreakKey::Client(client)).chain(device.map(|d| StreakKey::Device(d.to_owned())))
}

impl LimitStore for MemoryLimitStore {
    fn admit<'a>(&'a self, key: ClientKey, device: Option<&'a str>) -> BoxFuture<'a, Result<(), Duration>> {
        let now = Instant::now();
        let locked = keys(key, device).filter_map(|k| self.locked(&k, now)).max();
        let result = match locked {
            Some(wait) => Err(wait),
            None => self
                .per_client
                .check_key(&key)
                .map_err(|nu| self.wait(&nu))
                .and_then(|()| self.state.global.1.check().map_err(|nu| self.wait(&nu))),
        };
        Box::pin(std::future::ready(result))
    }

    fn record_failure<'a>(&'a self, key: ClientKey, device: Option<&'a str>) -> BoxFuture<'a, FailureOutcome> {
        let now = Instant::now();
        let mut outcome = FailureOutcome {
            client_lockout: self.extend_streak(StreakKey::Client(key), now),
            device_lockout: device.and_then(|d| self.extend_streak(StreakKey::Device(d.to_owned()), now)),
            attack_mode_started: false,
        };
        if self.state.failure_budget.1.check().is_err() {
            // Over budget: attack mode, extended for as long as failures continue.
            let mut attack = self.state.attack.lock();
            outcome.attack_mode_started = attack.until.is_none_or(|until| until <= now);
            if outcome.attack_mode_started {
                attack.failures = 0;
            }
            attack.failures += 1;
            attack.until = Some(now + self.config.attack_cooldown);
        }
        Box::pin(std::future::ready(outcome))
    }

    fn attack_mode(&self) -> AttackMode {
        let now = Instant::now();
        let mut attack = self.state.attack.lock();
        match attack.until {
            Some(until) if until > now => AttackMode::On(until - now),
            Some(_) => {
                attack.until = None;
                AttackMode::Ended { failures: std::mem::take(&mut attack.failures) }
            }
            None => AttackMode::Off,
        }
    }

    fn active_lockouts(&self) -> u64 {
        let now = Instant::now();
        self.state.streaks.iter().filter(|(_, s)| s.locked_until.is_some_and(|u| u > now)).count() as u64
    }

    fn reconfigure(&self, config: &LimitsConfig) -> Arc<dyn LimitStore> {
        Arc::new(Self::with_state(config, self.state.clone()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::state::limits::store::retry_after_secs;

    pub(crate) fn limits(per_ip: &str, after: u32, base: u64, max: u64) -> LimitsConfig {
        LimitsConfig {
            login_per_ip: per_ip.parse().unwrap(),
            lockout_after: after,
            lockout_base: Duration::from_secs(base),
            lockout_max: Duration::from_secs(max),
            ..LimitsConfig::default()
        }
    }

    #[tokio::test]
    async fn a_reload_hands_out_no_fresh_global_budget() {
        let config = LimitsConfig {
            login_global: "2/hour".parse().unwrap(),
            attack_failures: "2/hour".parse().unwrap(),
            ..limits("1000/s", 0, 60, 3600)
        };
        let store = MemoryLimitStore::new(&config);
        let key = |i: u8| ClientKey::of(std::net::IpAddr::from([192, 0, 2, i]));
        assert!(store.admit(key(1), None).await.is_ok() && store.admit(key(2), None).await.is_ok());
        assert!(!store.record_failure(key(1), None).await.attack_mode_started);
        assert!(!store.record_failure(key(2), None).await.attack_mode_started);
        // A reload (a certificate renewal, SIGHUP) with the same limits.
        let reloaded = store.reconfigure(&config);
        assert!(reloaded.admit(key(3), None).await.is_err(), "the global login limit carries over");
        assert!(reloaded.record_failure(key(3), None).await.attack_mode_started, "so does the failure budget");
        // A changed rate is a new limit.
        let raised = LimitsConfig { login_global: "100/hour".parse().unwrap(), ..config };
        assert!(reloaded.reconfigure(&raised).admit(key(4), None).await.is_ok());
    }

    #[tokio::test]
    async fn a_streak_locks_a_key() {
        let store = MemoryLimitStore::new(&limits("1000/s", 3, 60, 3600));
        let key = ClientKey::of("192.0.2.1".parse().unwrap());
        let other = ClientKey::of("192.0.2.2".parse().unwrap());
        assert!(store.record_failure(key, None).await.client_lockout.is_none());
        assert!(store.record_failure(key, None).await.client_lockout.is_none());
        let third = store.record_failure(key, None).await;
        assert_eq!(third.client_lockout, Some(Lockout { duration: Duration::from_secs(60) }));
        let wait = store.admit(key, None).await.unwrap_err();
        assert!(wait > Duration::from_secs(58) && wait <= Duration::from_secs(60));
        assert!(store.admit(other, None).await.is_ok(), "other clients are not affected");
        assert_eq!(store.active_lockouts(), 1);
    }

    #[tokio::test]
    async fn the_rate_admits_exactly_its_burst_even_when_raced() {
        let store = Arc::new(MemoryLimitStore::new(&limits("5/min", 10, 60, 3600)));
        let key = ClientKey::of("192.0.2.1".parse().unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.admit(key, None).await.is_ok() })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 5);
        let wait = store.admit(key, None).await.unwrap_err();
        assert_eq!(retry_after_secs(wait), 12, "one slot replenishes every 12 s at 5/min");
    }

    #[tokio::test]
    async fn a_device_is_locked_out_whatever_address_it_comes_from() {
        let store = MemoryLimitStore::new(&limits("1000/s", 2, 60, 3600));
        let (a, b) = (ClientKey::of("192.0.2.1".parse().unwrap()), ClientKey::of("198.51.100.1".parse().unwrap()));
        store.record_failure(a, Some("laptop")).await;
        let second = store.record_failure(b, Some("laptop")).await;
        assert!(second.device_lockout.is_some() && second.client_lockout.is_none());
        let c = ClientKey::of("203.0.113.1".parse().unwrap());
        assert!(store.admit(c, Some("laptop")).await.is_err(), "the device is locked on any address");
        assert!(store.admit(c, None).await.is_ok(), "the address itself is not");
    }

    #[tokio::test]
    async fn exceeding_the_failure_budget_starts_attack_mode_until_the_cooldown_ends() {
        let config = LimitsConfig {
            attack_failures: "3/hour".parse().unwrap(),
            attack_cooldown: Duration::from_millis(300),
            ..limits("1000/s", 1000, 60, 3600)
        };
        let store = MemoryLimitStore::new(&config);
        let key = ClientKey::of("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            assert!(!store.record_failure(key, None).await.attack_mode_started);
        }
        assert_eq!(store.attack_mode(), AttackMode::Off);
        assert!(store.record_failure(key, None).await.attack_mode_started);
        assert!(!store.record_failure(key, None).await.attack_mode_started, "already on: extended, not restarted");
        assert!(matches!(store.attack_mode(), AttackMode::On(left) if left <= Duration::from_millis(300)));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(store.attack_mode(), AttackMode::Ended { failures: 2 });
        assert_eq!(store.attack_mode(), AttackMode::Off);
    }
}
