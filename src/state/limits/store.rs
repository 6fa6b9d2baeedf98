//! The `LimitStore` seam: what a login attempt asks of the limits, and what a
//! failure sets off; lockout durations, `Retry-After`, and reporting attack mode.

use std::sync::Arc;
use std::time::Duration;

use super::client::ClientKey;
use crate::config::LimitsConfig;
use crate::observe::metrics::Metrics;
use crate::state::secrets::BoxFuture;

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

/// The `n`-th lockout of a streak (1-based) lasts `base * 2^(n-1)`, at most `max`.
pub fn lockout_duration(n: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// Where limiter state lives: in this process now; a shared store (Redis) for
/// replicas implements the same calls and makes attack mode cluster-wide.
///
/// `device` is the id of a known-device cookie, when the browser has a valid one:
/// lockouts count per device as well as per client key, so a stolen laptop's
/// cookie is no guessing licence from fresh addresses.
pub trait LimitStore: Send + Sync {
    /// Let one login attempt through, or say how long until one may. Concurrent
    /// callers never overshoot: N attempts with one slot left admit one.
    fn admit<'a>(&'a self, key: ClientKey, device: Option<&'a str>) -> BoxFuture<'a, Result<(), Duration>>;
    /// A failed PIN: extends the streaks of the key and the device and spends the
    /// global failure budget.
    fn record_failure<'a>(&'a self, key: ClientKey, device: Option<&'a str>) -> BoxFuture<'a, FailureOutcome>;
    /// Whether attack mode is on; reports `Ended` once when it runs out.
    fn attack_mode(&self) -> AttackMode;
    /// Keys and devices locked out now.
    fn active_lockouts(&self) -> u64;
    /// The same state under new limits (a configuration reload): clients keep
    /// their streaks, lockouts and rate history; attack mode stays as it is.
    fn reconfigure(&self, config: &LimitsConfig) -> Arc<dyn LimitStore>;
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
