//! keypin's Lua scripts (each is one atomic step on the Redis server, timed by the
//! server's clock) and their invocations: which keys and arguments each takes.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, ScriptInvocation};

use super::shared::names::{self, NO_DEVICE};
use crate::config::{LimitsConfig, Rate};
use crate::state::limits::client::ClientKey;
use crate::state::limits::store::{IN_FLIGHT_WAIT, LOCKOUT_MEMORY, Verdict};

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("common.lua"), include_str!($file))))
    };
}

static ADMIT: LazyLock<Script> = script!("admit.lua");
static SETTLE: LazyLock<Script> = script!("settle.lua");
static REVOKE: LazyLock<Script> = script!("revoke.lua");
static OBSERVE: LazyLock<Script> = script!("observe.lua");

/// An admitted attempt holds its place at most this long, should its replica
/// never settle it (a crash): longer than any attempt takes.
pub const IN_FLIGHT_DEADLINE: Duration = Duration::from_secs(60);

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn rate(inv: &mut ScriptInvocation<'_>, rate: Rate) {
    inv.arg(micros(rate.per)).arg(rate.count.get());
}

/// The keys of a client and its device (or a stand-in that is never written).
fn streak_keys(inv: &mut ScriptInvocation<'_>, key: ClientKey, device: Option<&str>) {
    inv.key(names::client_streak(key))
        .key(device.map_or_else(|| NO_DEVICE.to_owned(), names::device_streak))
        .key(names::client_in_flight(key))
        .key(device.map_or_else(|| NO_DEVICE.to_owned(), names::device_in_flight))
        .key(names::ALL_IN_FLIGHT);
}

/// Replies `[verdict, µs]`: `ok`, `wait` (that long) or `attack` (on that long).
pub fn admit<'a>(c: &LimitsConfig, key: ClientKey, device: Option<&str>, id: &str) -> ScriptInvocation<'a> {
    let mut inv = ADMIT.prepare_invoke();
    streak_keys(&mut inv, key, device);
    inv.key(names::client_rate(key)).key(names::GLOBAL_RATE).key(names::BUDGET).key(names::ATTACK);
    inv.arg(id).arg(u8::from(device.is_some())).arg(c.lockout_after);
    rate(&mut inv, c.login_per_ip);
    rate(&mut inv, c.login_global);
    rate(&mut inv, c.attack_failures);
    inv.arg(micros(IN_FLIGHT_DEADLINE)).arg(micros(IN_FLIGHT_WAIT));
    inv
}

/// Replies `[client lockout µs, device lockout µs, attack mode started 0/1]`.
pub fn settle<'a>(
    c: &LimitsConfig,
    key: ClientKey,
    device: Option<&str>,
    id: &str,
    verdict: Verdict,
) -> ScriptInvocation<'a> {
    let mut inv = SETTLE.prepare_invoke();
    streak_keys(&mut inv, key, device);
    inv.key(names::BUDGET).key(names::ATTACK).key(names::LOCKED);
    let verdict = match verdict {
        Verdict::Failed => "failed",
        Verdict::Succeeded => "succeeded",
        Verdict::Unanswered => "unanswered",
    };
    inv.arg(id).arg(u8::from(device.is_some())).arg(verdict);
    inv.arg(c.lockout_after).arg(micros(c.lockout_base)).arg(micros(c.lockout_max));
    rate(&mut inv, c.attack_failures);
    let memory = LOCKOUT_MEMORY.max(c.lockout_max);
    inv.arg(micros(c.attack_cooldown)).arg(u64::try_from(memory.as_millis()).unwrap_or(u64::MAX));
    inv.arg(names::ATTACK_CHANNEL);
    inv
}

/// Revoke session `id` (ending at `until`, Unix seconds) for every replica.
pub fn revoke<'a>(id: &str, until: u64) -> ScriptInvocation<'a> {
    let mut inv = REVOKE.prepare_invoke();
    inv.key(names::REVOKED).arg(id).arg(until).arg(names::REVOCATIONS_CHANNEL);
    inv
}

/// Replies `[attack mode µs left, its failures, streaks locked out]`.
pub fn observe<'a>() -> ScriptInvocation<'a> {
    let mut inv = OBSERVE.prepare_invoke();
    inv.key(names::ATTACK).key(names::LOCKED);
    inv
}
