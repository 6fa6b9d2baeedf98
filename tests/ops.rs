//! Operations: metrics values after scripted traffic, and live reconfiguration —
//! certificate swap under a live HTTP/2 connection, limits and session keys changed
//! without a restart, a broken edit refused, 1,000 requests in flight across a
//! reload, upstream connections kept across a reload, SIGHUP to the real binary.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use keypin::config::SessionKey;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::browser::Browser;
use support::client::{Proto, empty, send};
use support::gateway::{GatewayProcess, TEST_SESSION_KEY, TestGateway, route_table};
use support::store::CountingStore;
use support::upstream::Upstream;

const FAST: &str = "[pin]\nmin_response = \"1ms\"\n";

fn session(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!("[session]\nkeys = [{}]\n", keys.join(", "))
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let upstream = Upstream::spawn().await;
    let store = Arc::new(CountingStore::demo());
    let config = format!("{FAST}[limits]\nlogin_per_ip = \"3/min\"\n{}", route_table(&upstream.url(), ""));
    let gw = TestGateway::with_store("", &config, store).await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("9999", "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.login("12", "/").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::TOO_MANY_REQUESTS);
    let page = browser.post_form("/.keypin/login", &[("pin", "1234"), ("csrf", "forged")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    for _ in 0..3 {
        assert_eq!(browser.get("/echo").await.status, StatusCode::OK);
    }
    assert_eq!(Browser::new(&gw).get("/echo").await.status, StatusCode::FOUND);

    let m = gw.metrics().await;
    let get = |name: &str| *m.get(name).unwrap_or_else(|| panic!("{name} missing: {m:#?}"));
    for (result, n) in
        [("success", 1.0), ("invalid_pin", 1.0), ("malformed", 1.0), ("rate_limited", 1.0), ("csrf", 1.0)]
    {
        assert_eq!(get(&format!("keypin_login_attempts_total{{result=\"{result}\"}}")), n, "{result}");
    }
    assert_eq!(get("keypin_login_attempts_total{result=\"backend_error\"}"), 0.0);
    // Lookups: 9999 (miss -> not found), 1234 at login (miss), 3 requests (hits).
    assert_eq!(get("keypin_secret_lookups_total{result=\"not_found\"}"), 1.0);
    assert_eq!(get("keypin_secret_lookups_total{result=\"miss\"}"), 1.0);
    assert_eq!(get("keypin_secret_lookups_total{result=\"hit\"}"), 3.0);
    assert_eq!(get("keypin_requests_total{route=\"app\",code=\"200\"}"), 3.0);
    assert_eq!(get("keypin_requests_total{route=\"app\",code=\"302\"}"), 1.0);
    assert_eq!(get("keypin_upstream_request_duration_seconds_count"), 3.0);
    assert!(get("keypin_open_connections") >= 1.0);
    assert_eq!(get("keypin_attack_mode"), 0.0);
    assert!(m.keys().any(|k| k.starts_with("keypin_build_info{version=")));
}

/// The leaf certificate a fresh TLS connection is shown.
async fn served_cert(gw: &TestGateway, trust: &std::path::Path) -> Vec<u8> {
    let tls = support::client::raw_tls(gw.addr, trust).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_swapped_certificate_is_served_to_new_handshakes_while_http2_goes_on() {
    let upstream = Upstream::spawn().await;
    let config = format!("{}{}", session(&[TEST_SESSION_KEY]), route_table(&upstream.url(), "public_paths = [\"/\"]"));
    let gw = TestGateway::start_watched("", &config).await;
    let old_pem = std::fs::read(gw.cert()).unwrap();
    let old_der = CertificateDer::from_pem_slice(&old_pem).unwrap().to_vec();
    let h2 = gw.client(Proto::H2);
    assert_eq!(send(&h2, Request::get(gw.url("/echo")).body(empty()).unwrap()).await.0.status(), 200);

    // A new certificate and key on disk; the client trusts both.
    let fresh = tempfile::tempdir().unwrap();
    let (cert, key) = (fresh.path().join("c.pem"), fresh.path().join("k.pem"));
    keypin::transport::tls::ensure_self_signed(&cert, &key).unwrap();
    let new_pem = std::fs::read(&cert).unwrap();
    std::fs::copy(&key, gw.dir.path().join("key.pem")).unwrap();
    std::fs::copy(&cert, gw.cert()).unwrap();
    let both = fresh.path().join("both.pem");
    std::fs::write(&both, [old_pem.as_slice(), new_pem.as_slice()].concat()).unwrap();
    gw.reconfigure(&config).await;

    let served = served_cert(&gw, &both).await;
    assert_ne!(served, old_der, "new handshakes get the new certificate");
    assert_eq!(served, CertificateDer::from_pem_slice(&new_pem).unwrap().to_vec());
    let (resp, _) = send(&h2, Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), 200, "the existing HTTP/2 connection keeps working");
}

#[tokio::test]
async fn limits_and_session_keys_change_without_a_restart_and_a_broken_edit_is_refused() {
    let upstream = Upstream::spawn().await;
    let (a, b) = (SessionKey::generate().to_base64().to_string(), SessionKey::generate().to_base64().to_string());
    let routes = route_table(&upstream.url(), "");
    let with = |keys: &[&str], rate: &str| {
        format!(
            "{FAST}{}[limits]\nlogin_per_ip = \"{rate}\"\n[secrets]\npath = \"{}/config/dev-secrets.toml\"\n{routes}",
            session(keys),
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let gw = TestGateway::start_watched("", &with(&[&a], "100/min")).await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    let sealed_with_a = browser.cookies["__Host-keypin"].clone();

    // Add key B (A still seals), then promote it: nobody is logged out.
    gw.reconfigure(&with(&[&a, &b], "100/min")).await;
    assert_eq!(browser.get("/echo").await.status, StatusCode::OK);
    gw.reconfigure(&with(&[&b, &a], "100/min")).await;
    assert_eq!(browser.get("/echo").await.status, StatusCode::OK, "an A cookie opens after B is promoted");
    let mut second = Browser::new(&gw);
    assert_eq!(second.login("4567", "/").await.status, StatusCode::SEE_OTHER);
    gw.reconfigure(&with(&[&b], "100/min")).await;
    assert_eq!(second.get("/echo").await.status, StatusCode::OK, "new cookies are sealed with B");
    let mut stale = Browser::new(&gw);
    stale.cookies.insert("__Host-keypin".into(), sealed_with_a);
    assert_eq!(stale.get("/echo").await.status, StatusCode::FOUND, "A retired: its cookies no longer open");

    // Tighten the login rate: the history of this client carries over.
    gw.reconfigure(&with(&[&b], "2/min")).await;
    let mut guesser = Browser::new(&gw);
    let statuses: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(guesser.login("9999", "/").await.status);
        }
        v
    };
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "2/min applies at once: {statuses:?}");

    // A broken edit is refused; the running configuration keeps serving.
    gw.reconfigure(&format!("{}[server]\nlisten_adress = \"oops\"\n", with(&[&b], "2/min"))).await;
    assert_eq!(second.get("/echo").await.status, StatusCode::OK);
    gw.reconfigure("this is not toml = = =").await;
    assert_eq!(second.get("/echo").await.status, StatusCode::OK);
}

/// The upstream connection a request went out on, as the upstream saw it.
async fn upstream_peer(gw: &TestGateway) -> String {
    let (resp, body) = send(&gw.client(Proto::H1), Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    echoed["peer"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn upstream_connections_are_the_workers_and_outlive_a_reload() {
    let upstream = Upstream::spawn().await;
    let config = format!("{}{}", session(&[TEST_SESSION_KEY]), route_table(&upstream.url(), "public_paths = [\"/\"]"));
    let gw = TestGateway::start_watched("workers = 1\n", &config).await;
    let before = upstream_peer(&gw).await;
    assert_eq!(upstream_peer(&gw).await, before, "kept alive and reused");
    gw.reconfigure(&format!("{config}\n# edited\n")).await;
    assert_eq!(upstream_peer(&gw).await, before, "the same pooled connection after the reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_in_flight_across_a_reload_all_succeed() {
    let upstream = Upstream::spawn().await;
    let config = format!("{}{}", session(&[TEST_SESSION_KEY]), route_table(&upstream.url(), "public_paths = [\"/\"]"));
    let gw = TestGateway::start_watched("", &config).await;
    let clients: Vec<_> = (0..10).map(|_| gw.client(Proto::H2)).collect();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let client = clients[i % clients.len()].clone();
        let req = Request::get(gw.url("/slow/600")).body(empty()).unwrap();
        tasks.push(tokio::spawn(async move { send(&client, req).await.0.status() }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.reconfigure(&format!("{config}\n# edited\n")).await;
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap() == StatusCode::OK);
    }
    assert_eq!(ok, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_real_binary() {
    let upstream = Upstream::spawn().await;
    let config = format!("{FAST}[limits]\nlogin_per_ip = \"100/min\"\n{}", route_table(&upstream.url(), ""));
    let gw = GatewayProcess::start("", &config);
    let path = gw.dir.path().join("keypin.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("100/min", "1/min");
    std::fs::write(&path, text).unwrap();
    gw.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.output().contains("configuration reloaded") {
        assert!(std::time::Instant::now() < deadline, "no reload logged:\n{}", gw.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut browser = Browser::connect(gw.addr.port(), &gw.cert());
    assert_eq!(browser.login("9999", "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.login("9999", "/").await.status, StatusCode::TOO_MANY_REQUESTS);
}
