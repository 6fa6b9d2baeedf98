//! The worst-case guessing budget of a configuration, for `keypin limits` and the
//! `check-config` warning: guesses per client key and for many keys within the
//! global ceiling, and the chance they hit a PIN in use.

use std::time::Duration;

use super::store::lockout_duration;
use crate::config::{LimitStoreKind, LimitsConfig, Rate};

/// Worst-case guessing over a span, from the configured PIN length and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// PINs of the shortest allowed length: the attacker's best target.
    pub pin_space: u64,
    /// Guesses one client key can make in the span.
    pub per_client: u64,
    /// Lockout cycles one key goes through.
    pub cycles: u64,
    /// Guesses `attackers` keys can make, before the global ceiling.
    pub all_clients: u64,
    /// The global limit's ceiling over the span.
    pub global: u64,
    /// `min(all_clients, global)`.
    pub effective: u64,
    pub p_one_client: f64,
    pub p_all_clients: f64,
    /// Expected number of valid PINs one client key finds.
    pub expected_found_one: f64,
    /// Expected number of valid PINs found by all attackers together.
    pub expected_found_all: f64,
}

/// Guesses one key can make in `span`: bursts of `lockout_after` guesses, each burst
/// taking `(lockout_after - burst) / rate`, followed by a lockout that doubles up to
/// `lockout_max` (the rate bucket refills during a lockout of at least one period).
/// Without lockouts it is the plain rate: `burst + rate * span`.
pub fn guesses_per_client(limits: &LimitsConfig, span: Duration) -> (u64, u64) {
    let rate = limits.login_per_ip;
    let burst = u64::from(rate.count.get());
    let per_guess = rate.per.as_secs_f64() / f64::from(rate.count.get());
    let span = span.as_secs_f64();
    let by_rate = |t: f64| burst + (t / per_guess).floor() as u64;
    if limits.lockout_after == 0 {
        return (by_rate(span), 0);
    }
    let after = u64::from(limits.lockout_after);
    let guessing = after.saturating_sub(burst) as f64 * per_guess;
    let (mut t, mut guesses, mut cycles) = (0.0, 0u64, 0u64);
    while t < span {
        let left = span - t;
        if left < guessing {
            guesses += after.min(by_rate(left));
            break;
        }
        guesses += after;
        cycles += 1;
        t += guessing + lockout_duration(cycles as u32, limits.lockout_base, limits.lockout_max).as_secs_f64();
    }
    (guesses, cycles)
}

/// The ceiling of a rate over `span`: its burst plus the sustained rate.
pub fn rate_ceiling(rate: Rate, span: Duration) -> u64 {
    u64::from(rate.count.get()) + (span.as_secs_f64() * rate.per_second()).floor() as u64
}

/// Chance that `guesses` distinct guesses in a space of `space` PINs hit at least
/// one of `users` valid ones (hypergeometric: 1 - C(space-users, g) / C(space, g)).
pub fn p_hit(guesses: u64, users: u64, space: u64) -> f64 {
    if users == 0 {
        return 0.0;
    }
    if guesses + users > space {
        return 1.0;
    }
    // C(S-U, G) / C(S, G) = prod_{i<U} (S-G-i) / (S-i)
    let (s, g) = (space as f64, guesses as f64);
    let log_miss: f64 = (0..users).map(|i| ((s - g - i as f64) / (s - i as f64)).ln()).sum();
    1.0 - log_miss.exp()
}

pub fn budget(limits: &LimitsConfig, min_digits: u8, attackers: u64, span: Duration, users: u64) -> Budget {
    let pin_space = 10u64.saturating_pow(u32::from(min_digits));
    let (per_client, cycles) = guesses_per_client(limits, span);
    let all_clients = per_client.saturating_mul(attackers);
    let global = rate_ceiling(limits.login_global, span);
    let effective = all_clients.min(global);
    let expected = |g: u64| (g.min(pin_space) as f64 * users as f64 / pin_space as f64).min(users as f64);
    Budget {
        pin_space,
        per_client,
        cycles,
        all_clients,
        global,
        effective,
        p_one_client: p_hit(per_client, users, pin_space),
        p_all_clients: p_hit(effective, users, pin_space),
        expected_found_one: expected(per_client),
        expected_found_all: expected(effective),
    }
}

/// One client key's year against 1,000 PINs in use, when it is weak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneClientYear {
    /// The chance to hit one PIN, over 1%.
    pub p_hit: f64,
    /// The shortest PIN length that keeps it at 1% or less with these limits.
    pub safe_digits: u8,
}

/// Whether one client key gets more than a 1% chance a year against 1,000 users.
pub fn weak_for_one_client(limits: &LimitsConfig, min_digits: u8) -> Option<OneClientYear> {
    let (guesses, _) = guesses_per_client(limits, Duration::from_secs(365 * 24 * 3600));
    let p = |digits: u8| p_hit(guesses, 1000, 10u64.saturating_pow(u32::from(digits)));
    let p_min = p(min_digits);
    (p_min > 0.01)
        .then(|| OneClientYear { p_hit: p_min, safe_digits: (min_digits..=32).find(|d| p(*d) <= 0.01).unwrap_or(32) })
}

/// A year of attack by `attackers` client keys without known devices.
#[derive(Debug, Clone, PartialEq)]
pub struct YearlyExposure {
    /// Guesses a year with per-client limits alone (capped by `login_global`).
    pub guesses_per_client_limits: u64,
    /// Failures a year the global budget lets through before attack mode shuts
    /// unknown devices out.
    pub guesses_with_budget: u64,
    /// Expected PINs discovered a year: (a) per-client limits alone…
    pub pins_per_client_limits: f64,
    /// …and (b) with the global failure budget.
    pub pins_with_budget: f64,
    /// The shortest PIN length that keeps (b) under one PIN a year.
    pub safe_digits: u32,
}

pub fn yearly_exposure(limits: &LimitsConfig, min_digits: u8, attackers: u64, users: u64) -> YearlyExposure {
    let year = Duration::from_secs(365 * 24 * 3600);
    let b = budget(limits, min_digits, attackers, year, users);
    let guesses_with_budget = b.effective.min(rate_ceiling(limits.attack_failures, year));
    let found = |guesses: u64, digits: u32| {
        let space = 10f64.powi(digits as i32);
        (guesses as f64 * users as f64 / space).min(users as f64)
    };
    let safe_digits = (1..=32).find(|d| found(guesses_with_budget, *d) < 1.0).unwrap_or(32);
    YearlyExposure {
        guesses_per_client_limits: b.effective,
        guesses_with_budget,
        pins_per_client_limits: found(b.effective, u32::from(min_digits)),
        pins_with_budget: found(guesses_with_budget, u32::from(min_digits)),
        safe_digits,
    }
}

/// Whether the budget lets 1,000 addresses find more than one of 1,000 PINs a year.
pub fn weak_against_a_botnet(limits: &LimitsConfig, min_digits: u8) -> Option<YearlyExposure> {
    let y = yearly_exposure(limits, min_digits, 1000, 1000);
    (y.pins_with_budget > 1.0).then_some(y)
}

/// The largest global failure budget a day (`attack_failures = "N/day"`) that
/// keeps a year's failures finding under one of `users` PINs of `digits` digits,
/// rounded down to two significant figures.
pub fn safe_failures_per_day(digits: u8, users: u64) -> u64 {
    let space = 10f64.powi(i32::from(digits));
    let per_day = (space / users.max(1) as f64 / 365.0).floor().max(1.0);
    let unit = 10f64.powi((per_day.log10().floor() as i32 - 1).max(0));
    ((per_day / unit).floor() * unit) as u64
}

/// What `keypin limits` asks about.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub attackers: u64,
    pub days: u64,
    pub users: u64,
}

/// The budget as one readable table, with the arithmetic spelled out.
pub fn report(limits: &LimitsConfig, min_digits: u8, max_digits: u8, scenario: Scenario) -> String {
    // More PINs in use than there are PINs is no scenario: count the space.
    let space = 10u64.saturating_pow(u32::from(min_digits));
    let asked = scenario.users;
    let scenario = Scenario { users: asked.min(space), ..scenario };
    let Scenario { attackers, days, users } = scenario;
    let span = Duration::from_secs(days * 24 * 3600);
    let b = budget(limits, min_digits, attackers, span, users);
    let rate = limits.login_per_ip;
    let burst = u64::from(rate.count.get());
    let pct = |p: f64| format!("{:.2}%", p * 100.0);
    let mut out = String::new();
    out.push_str(&format!(
        "PINs: {min_digits} to {max_digits} digits. An attacker aims at the shortest: {} possible \
         {min_digits}-digit PINs, {} in use (--users).\n",
        thousands(b.pin_space),
        thousands(users),
    ));
    if asked > users {
        out.push_str(&format!(
            "(--users {} is more than the {} possible PINs: counted as {}.)\n",
            thousands(asked),
            thousands(space),
            thousands(users)
        ));
    }
    let lockouts = if limits.lockout_after == 0 {
        "no lockouts".to_owned()
    } else {
        format!(
            "lockout after {} failures for {}, doubling up to {}",
            limits.lockout_after,
            humantime::format_duration(limits.lockout_base),
            humantime::format_duration(limits.lockout_max)
        )
    };
    out.push_str(&format!(
        "Limits: {rate} per address (IPv6: per /64), burst {burst}; {lockouts}; {} for all clients.\n",
        limits.login_global
    ));
    out.push_str(match limits.store {
        LimitStoreKind::Memory => {
            "Replicas: these figures are per keypin process (limits.store = \"memory\"); N replicas allow N \
             times as much. Share the limits with limits.store = \"redis://…\".\n\n"
        }
        LimitStoreKind::Redis(_) => {
            "Replicas: the limits are shared through Redis, so these figures hold for the whole cluster.\n\n"
        }
    });
    out.push_str(&format!("Worst case over {} (--days):\n", plural(days, "day", "days")));
    out.push_str(&format!("  {:<28} {:>15}  {:>14}  {:>12}\n", "", "guesses", "P(hit a PIN)", "PINs found"));
    out.push_str(&format!(
        "  {:<28} {:>15}  {:>14}  {:>12.1}\n",
        "one address",
        thousands(b.per_client),
        pct(b.p_one_client),
        b.expected_found_one
    ));
    out.push_str(&format!(
        "  {:<28} {:>15}  {:>14}  {:>12.1}\n",
        format!("{} (--attackers)", plural(attackers, "address", "addresses")),
        thousands(b.effective),
        pct(b.p_all_clients),
        b.expected_found_all
    ));
    out.push_str(&format!("  {:<28} {:>15}\n\n", "global ceiling", thousands(b.global)));
    explain(&mut out, limits, &b, scenario);
    out.push_str(&yearly_section(limits, min_digits, scenario));
    out
}

/// `n` and its noun, singular for one: "1 address", "1,000 addresses".
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// The arithmetic behind the table, line by line.
fn explain(out: &mut String, limits: &LimitsConfig, b: &Budget, scenario: Scenario) {
    let Scenario { attackers, days, users } = scenario;
    let span = Duration::from_secs(days * 24 * 3600);
    let rate = limits.login_per_ip;
    let per_guess = rate.per.as_secs_f64() / f64::from(rate.count.get());
    let burst = u64::from(rate.count.get());
    out.push_str("How:\n");
    if limits.lockout_after == 0 {
        out.push_str(&format!(
            "  one address: {burst} at once, then one every {per_guess:.1} s = {} guesses.\n",
            thousands(b.per_client)
        ));
    } else {
        let guessing = (u64::from(limits.lockout_after).saturating_sub(burst)) as f64 * per_guess;
        out.push_str(&format!(
            "  one address guesses {} times in {guessing:.0} s (({} - {burst} burst) x {per_guess:.1} s), then is\n  \
             locked out; {} such cycles fit in {} = {} guesses.\n",
            limits.lockout_after,
            limits.lockout_after,
            b.cycles + u64::from(b.per_client > b.cycles * u64::from(limits.lockout_after)),
            plural(days, "day", "days"),
            thousands(b.per_client),
        ));
    }
    out.push_str(&format!(
        "  {}: {} x {} = {}, capped by the global ceiling {} + {}/s x {} s = {}.\n",
        plural(attackers, "address", "addresses"),
        thousands(attackers),
        thousands(b.per_client),
        thousands(b.all_clients),
        limits.login_global.count,
        limits.login_global.per_second(),
        thousands(span.as_secs()),
        thousands(b.global),
    ));
    out.push_str(&format!(
        "  P(hit) = 1 - C(S-U, G) / C(S, G), S = {} PINs, U = {} in use, G = guesses; PINs found = G x U / S.\n",
        thousands(b.pin_space),
        thousands(users)
    ));
}

/// A year of the scenario's attackers, with and without the global failure budget.
fn yearly_section(limits: &LimitsConfig, min_digits: u8, scenario: Scenario) -> String {
    let Scenario { attackers, users, .. } = scenario;
    let y = yearly_exposure(limits, min_digits, attackers, users);
    format!(
        "\nA year of {} without known devices:\n  \
         (a) per-address limits alone: {} guesses, {:.1} PINs found\n  \
         (b) with the global failure budget ({} then attack mode for {}): {} guesses, {:.1} PINs found\n  \
         PINs of at least {} digits keep (b) under one PIN a year.\n",
        plural(attackers, "address", "addresses"),
        thousands(y.guesses_per_client_limits),
        y.pins_per_client_limits,
        limits.attack_failures,
        humantime::format_duration(limits.attack_cooldown),
        thousands(y.guesses_with_budget),
        y.pins_with_budget,
        y.safe_digits,
    )
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::limits::memory::tests::limits;

    #[test]
    fn the_default_budget_matches_the_hand_computation() {
        // 5/min, burst 5, lockout after 10, 1m doubling to 1h, 30 days:
        // each cycle guesses 10 in (10-5) x 12 s = 60 s, then locks 60,120,240,480,960,1920,
        // then 3600 s. Six cycles take 6x60 + 3780 = 4140 s; 707 full cycles of 3660 s
        // follow (2,587,620 s); the last 240 s fit one more cycle: 714 x 10 = 7140.
        let defaults = LimitsConfig::default();
        let month = Duration::from_secs(30 * 24 * 3600);
        let (guesses, _) = guesses_per_client(&defaults, month);
        assert_eq!(guesses, 7140);
        // Global: 100 burst + 100/s x 2,592,000 s.
        assert_eq!(rate_ceiling(defaults.login_global, month), 259_200_100);
        let b = budget(&defaults, 4, 1000, month, 1000);
        assert_eq!(b.all_clients, 7_140_000);
        assert_eq!(b.effective, 7_140_000);
        assert_eq!(b.pin_space, 10_000);
        assert_eq!(b.p_all_clients, 1.0);
        assert!(b.p_one_client > 0.999, "7140 guesses at 10,000 4-digit PINs with 1,000 in use");
    }

    #[test]
    fn the_report_shows_the_numbers_and_the_arithmetic() {
        let text = report(&LimitsConfig::default(), 4, 10, Scenario { attackers: 1000, days: 30, users: 1000 });
        for expected in [
            "10,000 possible 4-digit PINs, 1,000 in use",
            "7,140",
            "7,140,000",
            "259,200,100",
            "714 such cycles",
            "714.0",
            "1,000 addresses",
            "100.00%",
            "per keypin process",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in\n{text}");
        }
        let shared = LimitsConfig { store: LimitStoreKind::Redis("redis://redis".into()), ..LimitsConfig::default() };
        let text = report(&shared, 4, 10, Scenario { attackers: 1000, days: 30, users: 1000 });
        assert!(text.contains("hold for the whole cluster"), "{text}");
        // More users than PINs is capped and said; one of a thing is singular.
        let text = report(&LimitsConfig::default(), 4, 10, Scenario { attackers: 1, days: 1, users: 20_000 });
        assert!(text.contains("--users 20,000 is more than the 10,000 possible PINs: counted as 10,000"), "{text}");
        assert!(text.contains("1 address (--attackers)") && text.contains("over 1 day (--days)"), "{text}");
        assert!(!text.contains("1 addresses") && !text.contains("1 days"), "{text}");
        assert!(!text.contains("14,280"), "no more PINs found than exist: {text}");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(259_200_100), "259,200,100");
    }

    #[test]
    fn the_global_budget_bounds_a_botnet_whatever_its_size() {
        // Defaults: 200 failures/hour: 200 + 200 x 8,760 = 1,752,200 a year, far below
        // 1,000 addresses x per-address limits. With 6-digit PINs and 1,000 users:
        // (b) = 1,752,200 x 1,000 / 10^6 = 1,752.2, i.e. all 1,000 PINs; 10 digits
        // bring it to 0.18.
        let defaults = LimitsConfig::default();
        let small = yearly_exposure(&defaults, 6, 1000, 1000);
        assert_eq!(small.guesses_with_budget, 1_752_200);
        assert_eq!(small.pins_with_budget, 1000.0, "capped: every PIN in use is found");
        assert_eq!(small.safe_digits, 10);
        assert!(small.guesses_per_client_limits > small.guesses_with_budget);
        // A large deployment with a strict budget: 20/day, 100,000 users, 8 digits.
        let strict = LimitsConfig { attack_failures: "20/day".parse().unwrap(), ..defaults };
        let large = yearly_exposure(&strict, 8, 100_000, 100_000);
        assert_eq!(large.guesses_with_budget, 20 + 20 * 365);
        assert!((large.pins_with_budget - 7320.0 * 1e5 / 1e8).abs() < 1e-9, "{}", large.pins_with_budget);
        assert_eq!(large.safe_digits, 9, "7,320 x 100,000 / 10^9 = 0.73");
        assert!(weak_against_a_botnet(&LimitsConfig::default(), 6).is_some());
        assert!(weak_against_a_botnet(&strict, 10).is_none());
    }

    #[test]
    fn hit_probability_is_hypergeometric() {
        // One guess, one user, ten PINs: 1/10.
        assert!((p_hit(1, 1, 10) - 0.1).abs() < 1e-12);
        // Two guesses, two users, ten PINs: 1 - C(8,2)/C(10,2) = 1 - 28/45.
        assert!((p_hit(2, 2, 10) - (1.0 - 28.0 / 45.0)).abs() < 1e-12);
        assert_eq!(p_hit(9, 2, 10), 1.0);
        assert_eq!(p_hit(5, 0, 10), 0.0);
        // 8-digit PINs, 1,000 users, 10,000 guesses: about 1 - (1 - 1e-5)^10000 = 9.5%.
        assert!((p_hit(10_000, 1000, 100_000_000) - 0.0952).abs() < 0.001);
    }

    #[test]
    fn weak_settings_are_flagged() {
        assert!(weak_for_one_client(&LimitsConfig::default(), 4).is_some());
        let strict = limits("3/min", 5, 3600, 86_400);
        assert!(weak_for_one_client(&strict, 10).is_none());
    }
}
