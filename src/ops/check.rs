//! What `check-config` and start-up warn about: settings that are legal but risky,
//! one sentence each. Above configuration and the limits calculator, so neither
//! needs the other.

use std::time::Duration;

use crate::config::{
    Config, LimitStoreKind, SESSION_KEYS_ENV, SecretBackend, SecretNaming, canonical_ip, world_readable_mode,
};
use crate::state::limits::budget;

/// Variables an orchestrator sets in every container it runs: where one is set,
/// keypin most likely runs as one of several replicas.
const REPLICA_HINTS: [&str; 2] = ["KUBERNETES_SERVICE_HOST", "CONTAINER_APP_REPLICA_NAME"];

/// Risky-but-legal settings, one sentence each, for `check-config` and start-up.
pub fn warnings(config: &Config) -> Vec<String> {
    warnings_with_env(config, &|name| std::env::var(name).ok())
}

/// As [`warnings`], with the environment given.
pub fn warnings_with_env(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    replica_warning(config, env, &mut out);
    if config.session.keys.is_empty() {
        out.push(format!(
            "session.keys: no session key; `keypin serve` will refuse to start \
             (set {SESSION_KEYS_ENV} or session.keys, e.g. from `keypin gen-key`)"
        ));
    }
    let per_minute = config.limits.login_per_ip.per_second() * 60.0;
    if per_minute > 30.0 {
        out.push(format!(
            "limits.login_per_ip: {} allows {per_minute:.0} guesses a minute from one address; \
             e.g. login_per_ip = \"5/min\"",
            config.limits.login_per_ip
        ));
    }
    if config.limits.lockout_after == 0 || config.limits.lockout_after > 50 {
        out.push(format!(
            "limits.lockout_after: {} consecutive failures before a lockout is weak; e.g. lockout_after = 5",
            config.limits.lockout_after
        ));
    }
    if let Some(year) = budget::weak_for_one_client(&config.limits, config.pin.min_digits) {
        out.push(format!(
            "limits: one address has a {:.1}% chance a year to hit one of 1,000 {}-digit PINs \
             (see `keypin limits`); with these limits pin.min_digits = {} keeps it under 1%, or e.g. \
             min_digits = 8 with lockout_after = 5, lockout_max = \"48h\", attack_failures = \"250/day\" \
             (the table in docs/configuration.md)",
            year.p_hit * 100.0,
            config.pin.min_digits,
            year.safe_digits
        ));
    }
    if let Some(y) = budget::weak_against_a_botnet(&config.limits, config.pin.min_digits) {
        out.push(format!(
            "limits.attack_failures: 1,000 addresses could find {:.1} of 1,000 {}-digit PINs a year \
             within the global failure budget; pin.min_digits = {} keeps it under one, or with {} digits \
             e.g. attack_failures = \"{}/day\"",
            y.pins_with_budget,
            config.pin.min_digits,
            y.safe_digits,
            config.pin.min_digits,
            budget::safe_failures_per_day(config.pin.min_digits, 1000)
        ));
    }
    if config.pin.min_digits < 6 {
        out.push(format!(
            "pin.min_digits: {} digits is a small search space; e.g. min_digits = 8 (see `keypin limits`)",
            config.pin.min_digits
        ));
    }
    if config.pin.min_response < Duration::from_millis(100) {
        out.push("pin.min_response: under 100ms may let timing tell PINs apart; e.g. min_response = \"250ms\"".into());
    }
    network_warnings(config, &mut out);
    if matches!(config.secrets.backend, SecretBackend::KeyVault(_)) && config.pin.secret_name == SecretNaming::Plain {
        out.push(
            "pin.secret_name: \"plain\" puts every PIN in the vault's secret names, which anyone who may list \
             secrets (the Key Vault Reader role, for one) and the vault's logs see; use \"hmac\" with \
             pin.pin_key, e.g. secret_name = \"hmac\", pin_key = \"env:KEYPIN_PIN_KEY\" (`keypin secret-name` \
             prints the names to create)"
                .into(),
        );
    }
    if let SecretBackend::File { path } = &config.secrets.backend
        && let Some(mode) = world_readable_mode(path)
    {
        out.push(format!(
            "secrets.path: {} is readable by other users (mode {mode:o}); e.g. chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    out
}

/// Per-process limits where an orchestrator runs replicas.
fn replica_warning(config: &Config, env: &dyn Fn(&str) -> Option<String>, out: &mut Vec<String>) {
    if config.limits.store == LimitStoreKind::Memory
        && let Some(hint) = REPLICA_HINTS.into_iter().find(|name| env(name).is_some())
    {
        out.push(format!(
            "limits.store: \"memory\" keeps limits, lockouts and logouts per process, and {hint} says an \
             orchestrator runs this one; with several replicas an attacker gets one budget each and a logout \
             ends a session on one replica only. Share them, e.g. limits.store = \"redis://redis:6379/0\""
        ));
    }
}

/// Listeners and proxies: who may reach what.
fn network_warnings(config: &Config, out: &mut Vec<String>) {
    for net in &config.server.trusted_proxies {
        if net.prefix_len() == 0 {
            out.push(format!(
                "server.trusted_proxies: {net} trusts every peer's X-Forwarded-For; list only your proxies, \
                 e.g. trusted_proxies = [\"10.0.0.0/8\"]"
            ));
        }
    }
    if let Some(plain) = config.server.plain_listen
        && !is_private(canonical_ip(plain.ip()))
        && config.server.trusted_proxies.is_empty()
    {
        out.push(format!(
            "server.plain_listen: {plain} is plain HTTP on an address that may be public, and \
             server.trusted_proxies is empty: only the ingress in front should reach it (listen on loopback \
             or a private address, e.g. plain_listen = \"127.0.0.1:8081\", and list the ingress in \
             trusted_proxies)"
        ));
    }
    if !is_private(canonical_ip(config.server.admin_listen.ip())) {
        out.push(format!(
            "server.admin_listen: {} may be reachable from other networks, and the admin listener is plain \
             HTTP; e.g. admin_listen = \"127.0.0.1:9443\" (in Kubernetes the pod's address: \
             \"env:KEYPIN_ADMIN_LISTEN\" set to \"$(POD_IP):9443\", as deploy/kubernetes does)",
            config.server.admin_listen
        ));
    }
}

/// Loopback, or a private or link-local range (where an ingress beside keypin
/// would reach it); the unspecified address (every interface) is not.
fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risky_settings_are_flagged() {
        let text = "[limits]\nlogin_per_ip = \"100/min\"\n[server]\ntrusted_proxies = [\"0.0.0.0/0\"]\n\
                    [[route]]\nupstream = \"http://127.0.0.1:8080\"\n";
        let config = Config::parse(text, "test.toml", &|_| None).unwrap();
        let w = warnings(&config).join("\n");
        assert!(w.contains("limits.login_per_ip"), "{w}");
        assert!(w.contains("server.trusted_proxies"), "{w}");
        assert!(w.contains("session.keys"), "{w}");
    }

    #[test]
    fn every_warning_suggests_concrete_values() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets.toml");
        std::fs::write(&secrets, "").unwrap();
        std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let route = "[[route]]\nupstream = \"http://127.0.0.1:8080\"\n";
        let texts = [
            format!(
                "[server]\ntrusted_proxies = [\"0.0.0.0/0\"]\nadmin_listen = \"0.0.0.0:9443\"\n\
                 [pin]\nmin_digits = 4\nmin_response = \"50ms\"\n[limits]\nlogin_per_ip = \"100/min\"\n\
                 lockout_after = 0\n[secrets]\npath = \"{}\"\n{route}",
                secrets.display()
            ),
            format!(
                "[server]\nplain_listen = \"0.0.0.0:8080\"\n[secrets]\nbackend = \"keyvault\"\n\
                 vault_url = \"https://v.vault.azure.net/\"\n{route}"
            ),
        ];
        let kubernetes = |name: &str| (name == "KUBERNETES_SERVICE_HOST").then(|| "10.0.0.1".to_owned());
        let mut all = Vec::new();
        for text in &texts {
            all.extend(warnings_with_env(&Config::parse(text, "t.toml", &|_| None).unwrap(), &kubernetes));
        }
        for key in [
            "session.keys",
            "limits.login_per_ip",
            "limits.lockout_after",
            "limits: one address",
            "limits.attack_failures",
            "pin.min_digits",
            "pin.min_response",
            "pin.secret_name",
            "secrets.path",
            "limits.store",
            "server.trusted_proxies",
            "server.plain_listen",
            "server.admin_listen",
        ] {
            assert!(all.iter().any(|w| w.starts_with(key)), "no {key} warning in {all:#?}");
        }
        for warning in &all {
            assert!(warning.contains("e.g. "), "names no concrete value: {warning}");
        }
    }

    #[test]
    fn a_plain_listener_anyone_may_reach_is_flagged() {
        let with = |server: &str| {
            let text = format!("[server]\n{server}\n[[route]]\nupstream = \"http://127.0.0.1:8080\"\n");
            warnings(&Config::parse(&text, "test.toml", &|_| None).unwrap()).join("\n")
        };
        assert!(with("plain_listen = \"0.0.0.0:8080\"").contains("server.plain_listen"));
        assert!(!with("plain_listen = \"10.0.0.5:8080\"").contains("server.plain_listen"));
        assert!(!with("plain_listen = \"0.0.0.0:8080\"\ntrusted_proxies = [\"10.0.0.0/8\"]").contains("plain_listen"));
    }

    #[test]
    fn an_orchestrator_with_a_per_process_store_is_flagged() {
        let text = "[[route]]\nupstream = \"http://127.0.0.1:8080\"\n";
        let memory = Config::parse(text, "test.toml", &|_| None).unwrap();
        let kubernetes = |name: &str| (name == "KUBERNETES_SERVICE_HOST").then(|| "10.0.0.1".to_owned());
        let w = warnings_with_env(&memory, &kubernetes).join("\n");
        assert!(w.contains("limits.store") && w.contains("KUBERNETES_SERVICE_HOST"), "{w}");
        assert!(!warnings_with_env(&memory, &|_| None).join("\n").contains("limits.store"), "not on a laptop");
        let shared = format!("[limits]\nstore = \"redis://redis:6379\"\n{text}");
        let shared = Config::parse(&shared, "test.toml", &|_| None).unwrap();
        assert!(!warnings_with_env(&shared, &kubernetes).join("\n").contains("limits.store"));
    }
}
