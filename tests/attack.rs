//! Attack mode and known devices: above the global failure budget only browsers
//! that signed in before may try PINs; device cookies are checked like sessions;
//! lockouts follow a device across addresses.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{StatusCode, header};
use keypin::config::SessionConfig;
use keypin::config::SessionKey;
use keypin::state::session::{Sessions, revocations};
use support::browser::Browser;
use support::gateway::{GatewayProcess, TEST_SESSION_KEY, TestGateway, route_table};
use support::store::CountingStore;
use support::upstream::Upstream;

const DEVICE: &str = "__Host-keypin-device";

async fn setup(limits: &str, server_extra: &str) -> (Upstream, TestGateway) {
    let upstream = Upstream::spawn().await;
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\nlogin_per_ip = \"10000/s\"\n{limits}\n{}",
        route_table(&upstream.url(), "")
    );
    let gw = TestGateway::with_store(server_extra, &config, Arc::new(CountingStore::demo())).await;
    (upstream, gw)
}

#[tokio::test]
async fn above_the_failure_budget_only_known_devices_may_sign_in_until_the_cooldown() {
    let (_up, gw) = setup("lockout_after = 1000\nattack_failures = \"3/hour\"\nattack_cooldown = \"1s\"", "").await;
    let mut known = Browser::new(&gw);
    assert_eq!(known.attempt("1234", None).await.status, StatusCode::SEE_OTHER);
    assert!(known.cookies.contains_key(DEVICE), "a sign-in sets the known-device cookie");
    // The device cookie alone signs nobody in.
    let mut only_device = Browser::new(&gw);
    only_device.cookies.insert(DEVICE.into(), known.cookies[DEVICE].clone());
    assert_eq!(only_device.get("/echo").await.status, StatusCode::FOUND);

    let mut fresh = Browser::new(&gw);
    for pin in ["9990", "9991", "9992", "9993"] {
        assert_eq!(fresh.attempt(pin, None).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(gw.metrics().await["keypin_attack_mode"], 1.0);
    let page = fresh.attempt("1234", None).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "a valid PIN from an unknown browser is refused");
    assert!(page.body.contains("temporarily restricted"), "{}", page.body);
    assert!(page.headers.contains_key(header::RETRY_AFTER));
    assert!(page.set_cookie("__Host-keypin").is_none());
    assert_eq!(known.attempt("4567", None).await.status, StatusCode::SEE_OTHER, "known devices sign in");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(gw.metrics().await["keypin_attack_mode"], 0.0, "the mode ends after the cooldown");
    assert_eq!(fresh.attempt("1234", None).await.status, StatusCode::SEE_OTHER);
}

/// The deployment the test gateways here are (default secrets and PIN naming):
/// cookie keys are bound to it.
fn gateway_deployment() -> String {
    let text = route_table("http://127.0.0.1:9", "");
    keypin::config::Config::parse(&text, "test.toml", &|_| None).unwrap().session.deployment
}

#[tokio::test]
async fn forged_expired_and_foreign_device_cookies_count_as_no_device() {
    let (_up, gw) = setup("lockout_after = 1000\nattack_failures = \"1/hour\"\nattack_cooldown = \"1h\"", "").await;
    let mut attacker = Browser::new(&gw);
    for pin in ["9990", "9991"] {
        attacker.attempt(pin, None).await;
    }
    // Sealed with our own key but issued 91 days ago.
    let ours = Sessions::new(
        &SessionConfig {
            deployment: gateway_deployment(),
            cookie_name: "__Host-keypin".into(),
            keys: vec![SessionKey::from_base64(TEST_SESSION_KEY).unwrap()],
            ttl: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(600),
        },
        revocations(),
    );
    let issued = keypin::state::session::now() - 91 * 24 * 3600;
    let expired = ours.seal(
        DEVICE,
        format!("{{\"d\":\"old\",\"u\":\"user1\",\"t\":{issued}}}"),
        Duration::from_secs(60),
        cookie::SameSite::Strict,
    );
    let expired = expired.to_str().unwrap().split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    // A real device cookie from a gateway with another key.
    let foreign_key = SessionKey::generate().to_base64().to_string();
    let upstream = Upstream::spawn().await;
    let foreign_gw = TestGateway::with_store(
        "",
        &format!("[session]\nkeys = [\"{foreign_key}\"]\n{}", route_table(&upstream.url(), "")),
        Arc::new(CountingStore::demo()),
    )
    .await;
    let mut elsewhere = Browser::new(&foreign_gw);
    assert_eq!(elsewhere.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    let foreign = elsewhere.cookies[DEVICE].clone();

    for (what, value) in [("forged", "bm90IGEgZGV2aWNl".to_owned()), ("expired", expired), ("foreign", foreign)] {
        let mut browser = Browser::new(&gw);
        browser.cookies.insert(DEVICE.into(), value);
        let page = browser.attempt("1234", None).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "a {what} device cookie counted as a known device");
    }
}

#[tokio::test]
async fn a_device_stays_locked_out_across_address_changes() {
    let (_up, gw) = setup("lockout_after = 2", "trusted_proxies = [\"127.0.0.1\"]").await;
    let mut laptop = Browser::new(&gw);
    assert_eq!(laptop.attempt("1234", Some("203.0.113.1")).await.status, StatusCode::SEE_OTHER);
    assert_eq!(laptop.attempt("9999", Some("203.0.113.2")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(laptop.attempt("9998", Some("203.0.113.3")).await.status, StatusCode::UNAUTHORIZED);
    let page = laptop.attempt("1234", Some("203.0.113.4")).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "the device's streak follows it to a new address");
    let mut other = Browser::new(&gw);
    assert_eq!(other.attempt("1234", Some("203.0.113.4")).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_mode_is_audited_on_and_off() {
    let upstream = Upstream::spawn().await;
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\nlogin_per_ip = \"10000/s\"\nlockout_after = 1000\n\
         attack_failures = \"2/hour\"\nattack_cooldown = \"1s\"\n{}",
        route_table(&upstream.url(), "")
    );
    let gw = GatewayProcess::start("", &config);
    let mut browser = Browser::connect(gw.addr.port(), &gw.cert());
    for pin in ["9990", "9991", "9992"] {
        browser.attempt(pin, None).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let audited = |state: &str| {
        gw.output().lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            v["event"] == "attack_mode" && v["state"] == state && v["level"] == "WARN"
        })
    };
    while !(audited("on") && audited("off")) {
        assert!(std::time::Instant::now() < deadline, "attack_mode on/off not audited:\n{}", gw.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
