//! The PIN, the password, cookie values and session keys never reach a log: the real
//! binary runs with debug logging through every login path, and everything it
//! printed (operational, access and audit logs, all JSON lines) is searched; and
//! with Key Vault unreachable, whatever `RUST_LOG` asks of the Azure SDK, no secret
//! name (which holds the PIN) is logged.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{Request, StatusCode, header};
use support::browser::Browser;
use support::client::empty;
use support::gateway::{GatewayProcess, TEST_SESSION_KEY, route_table};
use support::upstream::Upstream;

const PIN: &str = "8675309421";
const PASSWORD: &str = "Zq7-uniquePassw0rd:x";
const WRONG_PIN: &str = "5550001112";
const BAD_DATA_PIN: &str = "44448888";
const BAD_DATA_VALUE: &str = "no-colon-VALUE-SECRET";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log() {
    let upstream = Upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(
        &secrets,
        format!("\"secret-{PIN}\" = \"carol:{PASSWORD}\"\n\"secret-{BAD_DATA_PIN}\" = \"{BAD_DATA_VALUE}\"\n"),
    )
    .unwrap();
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\nlogin_per_ip = \"10000/s\"\n[secrets]\npath = \"{}\"\n{}",
        secrets.display(),
        route_table(&upstream.url(), "inject = \"both\"")
    );
    let mut gw = GatewayProcess::start_with_log("", &config, "debug");
    let mut browser = Browser::connect(gw.addr.port(), &gw.cert());
    let mut recorded = Vec::new();

    // Unauthenticated, malformed, unknown, bad CSRF, oversized, bad backend data.
    assert_eq!(browser.get("/echo?token=abc").await.status, StatusCode::FOUND);
    assert_eq!(browser.login(WRONG_PIN, "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.login("12ab", "/").await.status, StatusCode::BAD_REQUEST);
    let page = browser.post_form("/.keypin/login", &[("pin", PIN), ("csrf", "forged")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let csrf = browser.csrf().await;
    recorded.push(csrf.clone());
    let page = browser.post_raw("/.keypin/login", format!("pin={PIN}&x={}", "9".repeat(5000)), None).await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(browser.login(BAD_DATA_PIN, "/").await.status, StatusCode::SERVICE_UNAVAILABLE);

    // Success, authenticated traffic, logout, replay.
    let page = browser.login(PIN, "/echo").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let session = browser.cookies["__Host-keypin"].clone();
    recorded.push(session.clone());
    assert_eq!(browser.get("/echo").await.status, StatusCode::OK);
    let forged = Request::get(browser.url("/echo"))
        .header(header::COOKIE, format!("__Host-keypin={session}"))
        .header(header::AUTHORIZATION, "Basic Zm9yZ2Vk")
        .body(empty())
        .unwrap();
    assert_eq!(browser.send(forged).await.status, StatusCode::OK);
    let csrf = browser.get("/.keypin/logout").await.field("csrf");
    assert_eq!(browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
    let mut replay = Browser::connect(gw.addr.port(), &gw.cert());
    replay.cookies.insert("__Host-keypin".into(), session);
    assert_eq!(replay.get("/echo").await.status, StatusCode::FOUND);

    gw.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = gw.wait_exit(Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(200)); // let the reader threads drain
        (status, gw)
    })
    .await
    .unwrap();
    assert!(status.0.success());
    let output = status.1.output();

    // Both logs are JSON lines (`--log-format json` for the operational log).
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    assert!(output.contains("\"target\":\"keypin::access\""), "the access log is there: {output}");
    // The log did record the events, so searching it means something.
    assert!(output.contains("\"event\":\"login_success\"") && output.contains("\"user\":\"carol\""), "{output}");
    assert!(output.contains("\"reason\":\"invalid_pin\""), "{output}");
    assert!(output.contains("\"reason\":\"malformed\"") && output.contains("\"reason\":\"csrf\""), "{output}");
    assert!(output.contains("\"event\":\"backend_error\"") && output.contains("\"event\":\"logout\""), "{output}");

    let basic = BASE64.encode(format!("carol:{PASSWORD}"));
    let mut forbidden = vec![
        PIN.to_owned(),
        WRONG_PIN.to_owned(),
        BAD_DATA_PIN.to_owned(),
        PASSWORD.to_owned(),
        BAD_DATA_VALUE.to_owned(),
        basic,
        TEST_SESSION_KEY.to_owned(),
        TEST_SESSION_KEY[..24].to_owned(),
    ];
    forbidden.extend(recorded);
    for secret in forbidden {
        assert!(!output.contains(&secret), "{secret:.12}… appears in the log:\n{output}");
    }
}

/// The binary's whole output once it has stopped on SIGTERM.
async fn output_after_stop(mut gw: GatewayProcess) -> String {
    gw.signal("TERM");
    tokio::task::spawn_blocking(move || {
        assert!(gw.wait_exit(Duration::from_secs(15)).success());
        std::thread::sleep(Duration::from_millis(200)); // let the reader threads drain
        gw.output()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_reaches_the_log_while_key_vault_is_unreachable() {
    let upstream = Upstream::spawn().await;
    // A port nothing listens on: every lookup fails in the SDK's transport, retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[secrets]\nbackend = \"keyvault\"\nvault_url = \"https://{closed}/\"\n\
         credential = \"static_token\"\nstatic_token = \"t\"\nrequest_timeout = \"2s\"\n{}",
        route_table(&upstream.url(), "")
    );
    for filter in ["debug", "trace,typespec_client_core=trace,azure_core=trace,reqwest=trace"] {
        let gw = GatewayProcess::start_with_log("", &config, filter);
        let mut browser = Browser::connect(gw.addr.port(), &gw.cert());
        assert_eq!(browser.login(PIN, "/").await.status, StatusCode::SERVICE_UNAVAILABLE);
        let output = output_after_stop(gw).await;
        assert!(output.contains("\"event\":\"backend_error\""), "the outage was logged: {output}");
        assert!(!output.contains(PIN), "RUST_LOG={filter}: the PIN appears in the log:\n{output}");
    }
}
