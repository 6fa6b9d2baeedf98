//! The audit log: one JSON line per security event, through `tracing` with its own
//! target so the subscriber can send it to stdout or `--audit-log` apart from the
//! operational log. PINs, passwords and cookies never appear here.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The `tracing` target of audit events.
pub const TARGET: &str = "keypin::audit";

/// `namespace`: the secret prefix of the PIN namespace signed in to (never a PIN).
pub fn login_success(user: &str, ip: IpAddr, namespace: &str) {
    tracing::info!(target: TARGET, event = "login_success", user, ip = %ip, namespace);
}

/// Why a sign-in was refused, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    InvalidPin,
    Malformed,
    Csrf,
    FormTooLarge,
    RateLimited,
    AttackMode,
}

impl FailureReason {
    /// The `reason` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPin => "invalid_pin",
            Self::Malformed => "malformed",
            Self::Csrf => "csrf",
            Self::FormTooLarge => "form_too_large",
            Self::RateLimited => "rate_limited",
            Self::AttackMode => "attack_mode",
        }
    }
}

/// A refused sign-in from `ip` (never the PIN it tried).
pub fn login_failure(ip: IpAddr, reason: FailureReason) {
    tracing::info!(target: TARGET, event = "login_failure", ip = %ip, reason = reason.as_str());
}

pub fn logout(user: &str, ip: IpAddr, namespace: &str) {
    tracing::info!(target: TARGET, event = "logout", user, ip = %ip, namespace);
}

pub fn backend_error(kind: &'static str) {
    tracing::warn!(target: TARGET, event = "backend_error", kind);
}

/// A client key locked out for `duration` (`until` in RFC 3339).
pub fn lockout(ip: IpAddr, duration: Duration) {
    let until = humantime::format_rfc3339_seconds(SystemTime::now() + duration);
    tracing::warn!(target: TARGET, event = "lockout", ip = %ip, until = %until, seconds = duration.as_secs());
}

/// Attack mode switched `on` (after `failures` over the budget) or off (after
/// `failures` refused-or-failed attempts while on). Warn level: page on it.
pub fn attack_mode(on: bool, failures: u64) {
    let state = if on { "on" } else { "off" };
    tracing::warn!(target: TARGET, event = "attack_mode", state, failures);
    tracing::warn!(
        state,
        failures,
        "attack mode {state}: sign-in from unknown devices is {}",
        if on { "refused" } else { "allowed again" }
    );
}
