//! Brute-force defence over real TLS: per-client rate, lockouts, client addresses
//! behind trusted proxies, IPv6 /64 keys, metrics, and `keypin limits`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{StatusCode, header};
use support::browser::{Browser, Page};
use support::gateway::{TestGateway, route_table};
use support::store::{CountingStore, Mode};
use support::upstream::Upstream;

async fn setup(limits: &str, server_extra: &str) -> (Upstream, Arc<CountingStore>, TestGateway) {
    let upstream = Upstream::spawn().await;
    let store = Arc::new(CountingStore::demo());
    let config = format!("[pin]\nmin_response = \"1ms\"\n[limits]\n{limits}\n{}", route_table(&upstream.url(), ""));
    let gw = TestGateway::with_store(server_extra, &config, store.clone()).await;
    (upstream, store, gw)
}

fn retry_after(page: &Page) -> u64 {
    page.headers[header::RETRY_AFTER].to_str().unwrap().parse().expect("Retry-After is whole seconds")
}

fn sample(metrics: &std::collections::HashMap<String, f64>, name: &str) -> f64 {
    *metrics.get(name).unwrap_or_else(|| panic!("{name} missing in {metrics:?}"))
}

#[tokio::test]
async fn the_sixth_attempt_in_a_minute_is_429_even_with_a_valid_pin() {
    let (_up, store, gw) = setup("login_per_ip = \"5/min\"\nlockout_after = 100", "").await;
    let mut browser = Browser::new(&gw);
    for i in 0..5 {
        assert_eq!(browser.attempt(&format!("99{i:02}"), None).await.status, StatusCode::UNAUTHORIZED);
    }
    let before = store.total();
    let page = browser.attempt("1234", None).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=12).contains(&retry_after(&page)), "Retry-After {}", retry_after(&page));
    assert!(page.body.contains("role=\"alert\"") && page.body.contains(" second"), "{}", page.body);
    assert!(page.body.contains("<meta http-equiv=\"refresh\" content=\""), "the page comes back when the wait ends");
    assert!(page.body.contains(";url=/.keypin/login?rd="), "{}", page.body);
    assert!(page.set_cookie("__Host-keypin").is_none(), "no session while limited");
    assert_eq!(store.total(), before, "a limited attempt never reaches the store");
    let text = gw.metrics().await;
    assert_eq!(sample(&text, "keypin_login_attempts_total{result=\"rate_limited\"}"), 1.0);
    assert_eq!(sample(&text, "keypin_login_attempts_total{result=\"invalid_pin\"}"), 5.0);
}

#[tokio::test]
async fn consecutive_failures_lock_out_with_doubling_and_a_cap() {
    let (_up, store, gw) =
        setup("login_per_ip = \"1000/s\"\nlockout_after = 3\nlockout_base = \"1s\"\nlockout_max = \"2s\"", "").await;
    let mut browser = Browser::new(&gw);
    for expected_lock in [1, 2, 2] {
        assert_eq!(browser.attempt("9999", None).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(browser.attempt("12ab", None).await.status, StatusCode::BAD_REQUEST, "malformed counts");
        assert_eq!(browser.attempt("9998", None).await.status, StatusCode::UNAUTHORIZED);
        let page = browser.attempt("1234", None).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "the third failure locks");
        assert_eq!(retry_after(&page), expected_lock);
        assert_eq!(sample(&gw.metrics().await, "keypin_active_lockouts"), 1.0);
        tokio::time::sleep(Duration::from_millis(expected_lock * 1000 + 100)).await;
    }
    assert!(store.total() > 0);
}

#[tokio::test]
async fn a_success_between_failures_erases_none_of_them() {
    let (_up, _store, gw) =
        setup("login_per_ip = \"1000/s\"\nlockout_after = 3\nlockout_base = \"1m\"\nlockout_max = \"1h\"", "").await;
    // One who knows a valid PIN, guessing between sign-ins, from one address.
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.attempt("9999", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.attempt("1234", None).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.attempt("9998", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.attempt("1234", None).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.attempt("9997", None).await.status, StatusCode::UNAUTHORIZED, "the third failure locks");
    let page = browser.attempt("1234", None).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "locked out whatever successes came between");
    assert!(retry_after(&page) > 50);
}

#[tokio::test]
async fn backend_outages_never_lock_anyone_out() {
    let (_up, store, gw) = setup("login_per_ip = \"1000/s\"\nlockout_after = 2", "").await;
    store.set_mode(Mode::Unavailable);
    let mut browser = Browser::new(&gw);
    for _ in 0..6 {
        assert_eq!(browser.attempt("1234", None).await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    store.set_mode(Mode::Normal);
    assert_eq!(browser.attempt("1234", None).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn fifty_parallel_guesses_with_five_allowed_reach_the_pin_check_five_times() {
    let (_up, store, gw) = setup("login_per_ip = \"5/min\"\nlockout_after = 1000", "").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut browser = Browser::new(&gw);
        let csrf = browser.csrf().await;
        tasks.push(tokio::spawn(async move {
            let pin = format!("7{i:03}");
            browser.post_form("/.keypin/login", &[("pin", &pin), ("csrf", &csrf)]).await.status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 45);
    assert_eq!(store.total(), 5, "exactly five guesses reached the secret store");
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    // Untrusted peer: a different X-Forwarded-For on every attempt changes nothing.
    let (_up, _store, gw) = setup("login_per_ip = \"2/min\"\nlockout_after = 100", "").await;
    let mut browser = Browser::new(&gw);
    let spoofs = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
    let statuses: Vec<_> = {
        let mut v = Vec::new();
        for s in spoofs {
            v.push(browser.attempt("9999", Some(s)).await.status);
        }
        v
    };
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);

    // Trusted proxy: the right-most untrusted hop is the client.
    let (_up, _store, gw) =
        setup("login_per_ip = \"2/min\"\nlockout_after = 100", "trusted_proxies = [\"127.0.0.0/8\", \"192.0.2.0/24\"]")
            .await;
    let mut browser = Browser::new(&gw);
    for _ in 0..2 {
        let page = browser.attempt("9999", Some("198.51.100.7, 203.0.113.1, 192.0.2.9")).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let page = browser.attempt("9999", Some("198.51.100.99, 203.0.113.1, 192.0.2.9")).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "a forged left-most hop does not escape the limit");
    let page = browser.attempt("9999", Some("203.0.113.2, 192.0.2.9")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "another client behind the proxy has its own limit");
}

#[tokio::test]
async fn ipv6_clients_share_a_limit_per_64() {
    let (_up, _store, gw) =
        setup("login_per_ip = \"2/min\"\nlockout_after = 100", "trusted_proxies = [\"127.0.0.1\"]").await;
    let mut browser = Browser::new(&gw);
    for addr in ["2001:db8:aa:1::1", "2001:db8:aa:1:ffff::2"] {
        assert_eq!(browser.attempt("9999", Some(addr)).await.status, StatusCode::UNAUTHORIZED);
    }
    let page = browser.attempt("9999", Some("2001:db8:aa:1:1234::3")).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "same /64");
    let page = browser.attempt("9999", Some("2001:db8:aa:2::1")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "another /64");
}

#[test]
fn keypin_limits_prints_the_budget_of_the_default_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keypin"))
        .args(["limits", "--config", &format!("{root}/config/keypin.toml"), "--attackers", "1000", "--days", "30"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // Hand-computed in src/state/limits/budget.rs: 714 cycles of 10 guesses; the global
    // ceiling is 100 + 100/s x 2,592,000 s.
    for expected in ["7,140 ", "7,140,000", "259,200,100", "10,000 possible 4-digit PINs"] {
        assert!(text.contains(expected), "{expected:?} missing in\n{text}");
    }
}
