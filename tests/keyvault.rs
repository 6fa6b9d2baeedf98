//! The Key Vault secret store against the test vault on 127.0.0.1 (official SDK,
//! static-token credential, test CA): lookups, caching and coalescing, outage
//! semantics, changes in the vault, readiness.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::StatusCode;
use support::browser::Browser;
use support::gateway::{TestGateway, route_table};
use support::upstream::{Seen, Upstream};
use support::vault::{Fault, TOKEN, TestVault};

struct Setup {
    _upstream: Upstream,
    vault: TestVault,
    gw: TestGateway,
    _dir: tempfile::TempDir,
}

/// A gateway on the test vault; `secrets_extra` adds keys to `[secrets]`, `limits`
/// to `[limits]` (whose rate is high: these tests are not about it).
async fn setup(secrets_extra: &str, limits: &str) -> Setup {
    setup_at("", secrets_extra, limits).await
}

/// As `setup`, with `path` appended to the vault's URL.
async fn setup_at(path: &str, secrets_extra: &str, limits: &str) -> Setup {
    let upstream = Upstream::spawn().await;
    let vault = TestVault::start().await;
    vault.set("secret-1234", "user1:p@ssw0rd1");
    vault.set("secret-2468", "dana:with:colons");
    let dir = tempfile::tempdir().unwrap();
    let ca = vault.write_ca(dir.path());
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\nlogin_per_ip = \"10000/s\"\n{limits}\n[secrets]\nbackend = \"keyvault\"\nvault_url = \"{}{path}\"\n\
         credential = \"static_token\"\nstatic_token = \"{TOKEN}\"\nca_cert = \"{}\"\n{secrets_extra}\n{}",
        vault.url(),
        ca.display(),
        route_table(&upstream.url(), "")
    );
    let gw = TestGateway::start("", &config).await;
    Setup { _upstream: upstream, vault, gw, _dir: dir }
}

fn basic(user_pass: &str) -> String {
    format!("Basic {}", BASE64.encode(user_pass))
}

#[tokio::test]
async fn a_pin_in_the_vault_signs_in_and_the_upstream_sees_its_credentials() {
    let s = setup("", "").await;
    // Start-up warmed the client: the challenge round trip is already paid.
    assert_eq!(s.vault.challenges(), 1);
    let mut browser = Browser::new(&s.gw);
    assert_eq!(browser.login("2468", "/echo").await.status, StatusCode::SEE_OTHER);
    let seen = Seen::parse(browser.get("/echo").await.body.as_bytes());
    assert_eq!(seen.all("authorization"), [basic("dana:with:colons")]);
    assert_eq!(Browser::new(&s.gw).login("9999", "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.vault.challenges(), 1, "the challenge scope is cached per client");
}

#[tokio::test]
async fn concurrent_logins_and_repeated_unknown_pins_reach_the_vault_once_per_name() {
    let s = setup("negative_cache_ttl = \"60s\"", "").await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut browser = Browser::new(&s.gw);
        let csrf = browser.csrf().await;
        tasks.push(tokio::spawn(async move {
            browser.post_form("/.keypin/login", &[("pin", "1234"), ("csrf", &csrf)]).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::SEE_OTHER);
    }
    assert_eq!(s.vault.gets("secret-1234"), 1);
    for _ in 0..5 {
        assert_eq!(Browser::new(&s.gw).login("5555", "/").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(s.vault.gets("secret-5555"), 1);
}

#[tokio::test]
async fn vault_failures_at_login_are_503_quickly_and_never_lock_anyone_out() {
    let s = setup("request_timeout = \"1s\"", "lockout_after = 3").await;
    let faults = [Fault::ServerError, Fault::Hang, Fault::Throttle, Fault::Rbac];
    let mut browser = Browser::new(&s.gw);
    for (i, fault) in faults.iter().cycle().take(8).enumerate() {
        s.vault.set_fault(*fault);
        let started = Instant::now();
        let page = browser.login(&format!("{}", 1000 + i), "/").await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{fault:?}");
        assert!(started.elapsed() < Duration::from_millis(2500), "{fault:?} took {:?}", started.elapsed());
        // The page's random values (form token, style nonce) may hold any digits:
        // they are not looked at.
        let mut text = page.body.replace(&page.field("csrf"), "");
        if let Some(start) = text.find("nonce=\"").map(|i| i + "nonce=\"".len())
            && let Some(len) = text[start..].find('"')
        {
            text.replace_range(start..start + len, "");
        }
        assert!(!text.contains("Forbidden") && !text.contains("500"), "no internals: {}", page.body);
    }
    s.vault.set_fault(Fault::None);
    let page = browser.login("1234", "/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "8 outage failures with lockout_after = 3 locked nobody out");
}

#[tokio::test]
async fn sessions_ride_out_an_outage_for_stale_if_error_then_get_503() {
    let s = setup("cache_ttl = \"1s\"\nstale_if_error = \"2s\"\nrequest_timeout = \"500ms\"", "").await;
    let mut browser = Browser::new(&s.gw);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    s.vault.set_fault(Fault::ServerError);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let page = browser.get("/echo").await;
    assert_eq!(page.status, StatusCode::OK, "the last good value serves during the outage");
    assert_eq!(Seen::parse(page.body.as_bytes()).all("authorization"), [basic("user1:p@ssw0rd1")]);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let page = browser.get("/echo").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "after stale_if_error: 503, not a logout");
    s.vault.set_fault(Fault::None);
    assert_eq!(browser.get("/echo").await.status, StatusCode::OK, "the session survives the outage");
}

#[tokio::test]
async fn deleted_disabled_expired_and_changed_secrets_take_effect_within_cache_ttl() {
    let s = setup("cache_ttl = \"1s\"\nnegative_cache_ttl = \"1s\"", "").await;
    let ttl = Duration::from_millis(1200);
    let mut browser = Browser::new(&s.gw);
    browser.login("1234", "/").await;

    s.vault.set("secret-1234", "user1:rotated");
    tokio::time::sleep(ttl).await;
    let seen = Seen::parse(browser.get("/echo").await.body.as_bytes());
    assert_eq!(seen.all("authorization"), [basic("user1:rotated")]);

    s.vault.set_attributes("secret-1234", false, None, None);
    tokio::time::sleep(ttl).await;
    assert_eq!(browser.get("/echo").await.status, StatusCode::FOUND, "disabled: the session ends");
    assert_eq!(Browser::new(&s.gw).login("1234", "/").await.status, StatusCode::UNAUTHORIZED);

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    s.vault.set("secret-1234", "user1:again");
    s.vault.set_attributes("secret-1234", true, None, Some(now - 10));
    tokio::time::sleep(ttl).await;
    assert_eq!(Browser::new(&s.gw).login("1234", "/").await.status, StatusCode::UNAUTHORIZED, "expired");
    s.vault.set_attributes("secret-1234", true, Some(now + 3600), None);
    tokio::time::sleep(ttl).await;
    assert_eq!(Browser::new(&s.gw).login("1234", "/").await.status, StatusCode::UNAUTHORIZED, "not yet valid");

    s.vault.set("secret-1234", "user1:p@ssw0rd1");
    tokio::time::sleep(ttl).await;
    let mut browser = Browser::new(&s.gw);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    s.vault.delete("secret-1234");
    tokio::time::sleep(ttl).await;
    assert_eq!(browser.get("/echo").await.status, StatusCode::FOUND, "deleted: the session ends");
}

#[tokio::test]
async fn readiness_follows_the_vault() {
    let s = setup("request_timeout = \"500ms\"", "").await;
    assert_eq!(s.gw.readyz().await, 200);
    s.vault.set_fault(Fault::ServerError);
    assert_eq!(Browser::new(&s.gw).login("1234", "/").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.gw.readyz().await, 503);
    s.vault.set_fault(Fault::None);
    // The probe notices within a few seconds, without any login traffic.
    let deadline = Instant::now() + Duration::from_secs(6);
    while s.gw.readyz().await != 200 {
        assert!(Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_404_that_is_not_secret_not_found_is_a_backend_error_not_an_unknown_pin() {
    // A wrong path in vault_url: every answer is 404, but none is SecretNotFound.
    let s = setup_at("wrong/", "request_timeout = \"2s\"", "").await;
    assert_eq!(Browser::new(&s.gw).login("1234", "/").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(Browser::new(&s.gw).login("9999", "/").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.gw.readyz().await, 503, "readiness reports the backend");
    // The vault's own SecretNotFound still means an unknown PIN.
    let ok = setup("", "").await;
    assert_eq!(Browser::new(&ok.gw).login("9999", "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ok.gw.readyz().await, 200);
}

#[tokio::test]
#[ignore = "needs python3 with azure-keyvault-secrets (pip install azure-keyvault-secrets); cargo test -- --include-ignored"]
async fn the_official_python_client_reads_from_the_test_vault() {
    let vault = TestVault::start().await;
    vault.set("secret-4242", "py:thon");
    let dir = tempfile::tempdir().unwrap();
    let ca = vault.write_ca(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/python_client.py");
    let out = tokio::process::Command::new("python3")
        .args([script, &vault.url(), ca.to_str().unwrap(), TOKEN, "secret-4242"])
        .output()
        .await
        .expect("this test needs python3");
    assert_ne!(
        out.status.code(),
        Some(3),
        "this test needs azure-keyvault-secrets: pip install azure-keyvault-secrets"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "py:thon");
    assert!(vault.challenges() >= 1, "the Python client went through the challenge too");
}

#[tokio::test]
async fn hmac_secret_names_keep_pins_out_of_every_vault_url() {
    let upstream = Upstream::spawn().await;
    let vault = TestVault::start().await;
    let key = BASE64.encode([9u8; 32]);
    let pin = keypin::config::PinConfig {
        secret_name: keypin::config::SecretNaming::Hmac,
        pin_key: Some(keypin::config::PinKey::from_base64(&key).unwrap()),
        ..Default::default()
    };
    // The name `keypin secret-name` prints is the one the gateway asks for.
    let name = keypin::ops::provision::secret_name_for(&pin, "48291357").unwrap();
    vault.set(&name, "erin:hmac-pass");
    let dir = tempfile::tempdir().unwrap();
    let ca = vault.write_ca(dir.path());
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\nsecret_name = \"hmac\"\npin_key = \"{key}\"\n[secrets]\nbackend = \"keyvault\"\n\
         vault_url = \"{}\"\ncredential = \"static_token\"\nstatic_token = \"{TOKEN}\"\nca_cert = \"{}\"\n{}",
        vault.url(),
        ca.display(),
        route_table(&upstream.url(), "")
    );
    let gw = TestGateway::start("", &config).await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.attempt("13579246", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.login("48291357", "/echo").await.status, StatusCode::SEE_OTHER);
    let seen = Seen::parse(browser.get("/echo").await.body.as_bytes());
    assert_eq!(seen.one("authorization").unwrap(), basic("erin:hmac-pass"));
    let paths = vault.paths();
    assert!(paths.iter().any(|p| p.contains(&name)), "{paths:?}");
    for pin in ["48291357", "13579246"] {
        assert!(paths.iter().all(|p| !p.contains(pin)), "a PIN in a vault URL: {paths:?}");
    }
}
