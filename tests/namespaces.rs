//! Routes with their own PIN namespace (`route.secret_prefix`): one PIN opens
//! each app with that app's own credentials, sessions of two namespaces live side
//! by side in one browser on one host, a session of one never opens the other,
//! and logout ends them all.

mod support;

use http::StatusCode;
use support::browser::Browser;
use support::gateway::TestGateway;
use support::upstream::{Seen, Upstream};

fn basic(user_pass: &str) -> String {
    format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, user_pass))
}

/// `/a/` and `/b/` on one host, each its own namespace; `/` the default one.
async fn gateway() -> (Upstream, tempfile::TempDir, TestGateway) {
    let upstream = Upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(
        &secrets,
        "\"a-1234\" = \"alice-a:pass-a\"\n\"b-1234\" = \"alice-b:pass-b\"\n\"secret-1234\" = \"alice:pass\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let url = upstream.url();
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[secrets]\npath = \"{}\"\n\
         [[route]]\nname = \"a\"\npath_prefix = \"/a\"\nupstream = \"{url}\"\nsecret_prefix = \"a-\"\n\
         [[route]]\nname = \"b\"\npath_prefix = \"/b\"\nupstream = \"{url}\"\nsecret_prefix = \"b-\"\n\
         [[route]]\nname = \"rest\"\nupstream = \"{url}\"\n",
        secrets.display()
    );
    let gw = TestGateway::start("", &config).await;
    (upstream, dir, gw)
}

#[tokio::test]
async fn each_app_gets_its_own_credentials_and_a_session_opens_only_its_namespace() {
    let (_up, _dir, gw) = gateway().await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("1234", "/a/echo").await.status, StatusCode::SEE_OTHER);
    let seen = Seen::parse(browser.get("/a/echo").await.body.as_bytes());
    assert_eq!(seen.one("authorization").unwrap(), basic("alice-a:pass-a"));
    // App b never receives app a's credentials: no session there yet.
    let page = browser.get("/b/echo").await;
    assert_eq!(page.status, StatusCode::FOUND, "a session of namespace a-");
    assert!(page.location().starts_with("/.keypin/login"));
    assert_eq!(browser.get("/echo").await.status, StatusCode::FOUND, "nor the default namespace");

    // Signing in for b leaves a signed in: both live side by side.
    assert_eq!(browser.login("1234", "/b/echo").await.status, StatusCode::SEE_OTHER);
    let b = Seen::parse(browser.get("/b/echo").await.body.as_bytes());
    assert_eq!(b.one("authorization").unwrap(), basic("alice-b:pass-b"));
    let a = Seen::parse(browser.get("/a/echo").await.body.as_bytes());
    assert_eq!(a.one("authorization").unwrap(), basic("alice-a:pass-a"));

    // One namespace's cookie under another's name opens nothing.
    let a_cookie = browser.cookies["__Host-keypin-ns-a-"].clone();
    let mut forger = Browser::new(&gw);
    forger.cookies.insert("__Host-keypin-ns-b-".into(), a_cookie);
    assert_eq!(forger.get("/b/echo").await.status, StatusCode::FOUND);

    let metrics = gw.metrics().await;
    assert_eq!(metrics["keypin_sign_ins_total{namespace=\"a-\"}"], 1.0);
    assert_eq!(metrics["keypin_sign_ins_total{namespace=\"b-\"}"], 1.0);

    // Logout ends every session of the browser on this host.
    let copied = browser.cookies.clone();
    let csrf = browser.get("/.keypin/logout").await.field("csrf");
    let page = browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(!browser.cookies.keys().any(|k| k == "__Host-keypin-ns-a-" || k == "__Host-keypin-ns-b-"));
    let mut replay = Browser::new(&gw);
    replay.cookies = copied;
    assert_eq!(replay.get("/a/echo").await.status, StatusCode::FOUND);
    assert_eq!(replay.get("/b/echo").await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn the_audit_log_names_the_namespace_and_never_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(&secrets, "\"hr-482913\" = \"erin:pw\"\n").unwrap();
    std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let upstream = Upstream::spawn().await;
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[secrets]\npath = \"{}\"\n[[route]]\nupstream = \"{}\"\nsecret_prefix = \"hr-\"\n",
        secrets.display(),
        upstream.url()
    );
    let gw = support::gateway::GatewayProcess::start("", &config);
    let mut browser = Browser::connect(gw.addr.port(), &gw.cert());
    assert_eq!(browser.login("482913", "/").await.status, StatusCode::SEE_OTHER);
    let csrf = browser.get("/.keypin/logout").await.field("csrf");
    browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let output = gw.output();
    let events: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("\"event\":\"login_success\"") || l.contains("\"event\":\"logout\""))
        .collect();
    assert_eq!(events.len(), 2, "{output}");
    assert!(events.iter().all(|l| l.contains("\"namespace\":\"hr-\"")), "{events:?}");
    assert!(!output.contains("482913"), "no PIN in any log line");
}
