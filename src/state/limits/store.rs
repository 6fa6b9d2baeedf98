//! The `LimitStore` seam: what a login attempt asks of the limits, and what a
//! failure sets off; lockout durations, `Retry-After`, and reporting attack mode.

use std::sync::Arc;
use std::time::Duration;

use super::client::ClientKey;
use crate::config::LimitsConfig;
use crate::observe::metrics::Metrics;
use crate::state::secrets::BoxFuture;

/// A lockout streak is forgotten after this long without failures.
pub const LOCKOUT_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// A client with as many attempts in flight as it may have is asked to come back
/// after this long: about when they will have been answered.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

/// Why the configured limit store cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("limits.store: not a usable Redis URL; expected redis://[:password@]host[:port][/db] or rediss://… (TLS)")]
    BadRedisUrl,
}

/// A lockout that a failure started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub duration: Duration,
}

/// What one failed PIN set off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureOutcome {
    /// The client key's streak reached `lockout_after`.
    pub client_lockout: Option<Lockout>,
    /// The device's streak reached `lockout_after`.
    pub device_lockout: Option<Lockout>,
    /// This failure pushed all clients together over `attack_failures`: attack
    /// mode starts (it was off).
    pub attack_mode_started: bool,
}

/// Attack mode, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackMode {
    /// On for this much longer.
    On(Duration),
    Off,
    /// It just ended, after this many failures while on: reported once.
    Ended {
        failures: u64,
    },
}

/// Why a login attempt may not go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A rate limit or a lockout, or as many attempts in flight as may still fail
    /// without overshooting one (`lockout_after` for a client or a device, the
    /// failure budget's room for everyone): try again after this long.
    Wait(Duration),
    /// Attack mode is on and the browser is no known device.
    AttackMode(Duration),
    /// The shared store did not answer in time. Nobody guesses until it does:
    /// never unlimited guessing, never a failure counted.
    StoreUnavailable,
}

/// How an admitted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A wrong or malformed PIN: counts toward lockouts and the failure budget.
    Failed,
    Succeeded,
    /// No answer reached the client (backend outage, connection gone): it
    /// releases its place and counts for nothing.
    Unanswered,
}

/// An admitted attempt. Until it is settled it holds a place in its client's and
/// device's streaks and in the failure budget, so concurrent attempts cannot
/// overshoot a lockout or the budget while their PINs are being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub key: ClientKey,
    pub device: Option<String>,
    /// Unique among the attempts in flight (of every replica, for a shared store).
    pub id: String,
}

/// Whether the store can be used, for `/readyz` and `keypin_store_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHealth {
    /// This process's memory: always there.
    Memory,
    /// A shared store that answered its last call.
    Up,
    /// A shared store that did not: attempts are refused until it does.
    Down,
}

impl StoreHealth {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Up => "shared, up",
            Self::Down => "shared, unreachable: sign-ins refused, sessions served",
        }
    }
}

/// The `n`-th lockout of a streak (1-based) lasts `base * 2^(n-1)`, at most `max`.
pub fn lockout_duration(n: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// Where limiter state lives: this process (`memory`), or Redis shared by every
/// replica (`redis`), which also carries logout revocations between them.
///
/// `device` is the id of a known-device cookie, when the browser has a valid one:
/// lockouts count per device as well as per client key, so a stolen laptop's
/// cookie is no guessing licence from fresh addresses; under attack mode only
/// known devices may try.
pub trait LimitStore: Send + Sync {
    /// Let one login attempt through, or say why not. Concurrent callers never
    /// overshoot: N attempts with one slot left admit one. Use [`admit`], which
    /// settles an attempt that is dropped.
    fn admit_attempt<'a>(&'a self, key: ClientKey, device: Option<&'a str>) -> BoxFuture<'a, Result<Attempt, Refusal>>;
    /// The answer to an admitted attempt is known.
    fn settle(&self, attempt: Attempt, verdict: Verdict) -> BoxFuture<'_, FailureOutcome>;
    /// Whether attack mode is on; reports `Ended` once when it runs out.
    fn attack_mode(&self) -> AttackMode;
    /// Keys and devices locked out now (for a shared store: as last seen).
    fn active_lockouts(&self) -> u64;
    /// Tell the other replicas that session `id` is revoked until `until` (Unix
    /// seconds). The local table is the caller's; this never waits.
    fn share_revocation(&self, id: &str, until: u64);
    fn health(&self) -> StoreHealth;
    /// The same state under new limits (a configuration reload): clients keep
    /// their streaks, lockouts and rate history; attack mode stays as it is.
    fn reconfigure(&self, config: &LimitsConfig) -> Arc<dyn LimitStore>;
}

/// An admitted attempt that is settled once: by [`Pending::settle`], or as
/// unanswered when it is dropped (the client went away mid-check).
pub struct Pending {
    store: Arc<dyn LimitStore>,
    attempt: Option<Attempt>,
}

impl Pending {
    pub async fn settle(mut self, verdict: Verdict) -> FailureOutcome {
        let attempt = self.attempt.take().expect("settled once");
        self.store.settle(attempt, verdict).await
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            let store = self.store.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { store.settle(attempt, Verdict::Unanswered).await });
            }
        }
    }
}

/// Let one login attempt through `store`, or say why not.
pub async fn admit(store: &Arc<dyn LimitStore>, key: ClientKey, device: Option<&str>) -> Result<Pending, Refusal> {
    let attempt = store.admit_attempt(key, device).await?;
    Ok(Pending { store: store.clone(), attempt: Some(attempt) })
}

/// Read attack mode and report its end (audit, log, gauge) exactly once; `Some`
/// with the time left while it is on.
pub fn observe_attack_mode(store: &dyn LimitStore, metrics: &Metrics) -> Option<Duration> {
    match store.attack_mode() {
        AttackMode::On(left) => {
            metrics.attack_mode.set(1);
            Some(left)
        }
        AttackMode::Ended { failures } => {
            metrics.attack_mode.set(0);
            crate::observe::audit::attack_mode(false, failures);
            None
        }
        AttackMode::Off => {
            metrics.attack_mode.set(0);
            None
        }
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_and_cap() {
        let (base, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let d: Vec<u64> = (1..=9).map(|n| lockout_duration(n, base, max).as_secs()).collect();
        assert_eq!(d, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(lockout_duration(200, base, max), max);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::from_millis(3001)), 4);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
