//! PIN login end to end over real TLS, with a client that behaves like a browser:
//! the outcomes table, identity injection, redirects, cookies, sessions, logout.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{Request, StatusCode, header};
use support::browser::{Browser, urlencode};
use support::client::{Proto, empty, send};
use support::gateway::{TestGateway, route_table};
use support::store::{CountingStore, Mode};
use support::upstream::{Seen, Upstream};

/// Fast answers and a high login rate: the response-time floor and the limits have
/// tests of their own.
const FAST: &str = "[pin]\nmin_response = \"1ms\"\n[limits]\nlogin_per_ip = \"10000/s\"\nlockout_after = 1000\n";

fn basic(user_pass: &str) -> String {
    format!("Basic {}", BASE64.encode(user_pass))
}

async fn setup(route_extra: &str, extra: &str) -> (Upstream, Arc<CountingStore>, TestGateway) {
    let upstream = Upstream::spawn().await;
    let store = Arc::new(CountingStore::demo());
    let config = format!("{FAST}{extra}{}", route_table(&upstream.url(), route_extra));
    let gw = TestGateway::with_store("", &config, store.clone()).await;
    (upstream, store, gw)
}

#[tokio::test]
async fn unauthenticated_browsers_are_redirected_and_api_clients_get_401() {
    let (_up, store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    let page = browser.get("/reports/q3?year=2026&x=%2F").await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.location(), format!("/.keypin/login?rd={}", "%2Freports%2Fq3%3Fyear%3D2026%26x%3D%252F"));

    let (resp, body) = send(&gw.client(Proto::H2), Request::post(gw.url("/api/items")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["login"], "/.keypin/login?rd=%2Fapi%2Fitems");
    assert_eq!(store.total(), 0);
}

#[tokio::test]
async fn the_login_page_is_a_self_contained_form() {
    let (_up, _store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    let page = browser.get("/.keypin/login?rd=%2Fdeep%2Flink").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<form method=\"post\""));
    assert!(page.body.contains("name=\"pin\""));
    assert!(page.body.contains("inputmode=\"numeric\"") && page.body.contains("autocomplete=\"off\""));
    assert!(page.body.contains("<label for=\"pin\">"));
    assert_eq!(page.field("rd"), "/deep/link");
    assert!(page.field("csrf").len() >= 40);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(!page.body.contains("http://") && !page.body.contains("https://"), "no external assets");
    let csrf = page.set_cookie("__Host-keypin-csrf").expect("a CSRF cookie");
    assert!(csrf.contains("Secure") && csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"), "{csrf}");
}

#[tokio::test]
async fn a_valid_pin_signs_in_and_the_upstream_sees_only_keypins_identity() {
    let (_up, store, gw) = setup("inject = \"both\"\nuser_header = \"X-App-User\"", "").await;
    store.set("secret-5555", "alice:pa:ss:word");
    let mut browser = Browser::new(&gw);
    let page = browser.login("5555", "/echo/deep?x=1").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/echo/deep?x=1");
    let cookie = page.set_cookie("__Host-keypin").expect("a session cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }

    // The browser follows the redirect, with a forged identity and a cookie of its own.
    let mut req = Request::get(browser.url("/echo/deep?x=1"))
        .header(header::AUTHORIZATION, "Basic Zm9yZ2VkOmZvcmdlZA==")
        .header("x-app-user", "mallory")
        .header("x_app_user", "mallory")
        .header("x-forwarded-user", "mallory");
    let cookies = browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    req = req.header(header::COOKIE, format!("{cookies}; theme=dark"));
    let page = browser.send(req.body(empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let seen = Seen::parse(page.body.as_bytes());
    assert_eq!(seen.all("authorization"), [basic("alice:pa:ss:word")]);
    assert_eq!(seen.all("x-app-user"), ["alice"]);
    assert!(seen.all("x_app_user").is_empty() && seen.all("x-forwarded-user").is_empty());
    assert_eq!(seen.all("cookie"), ["theme=dark"], "keypin's cookies stay with keypin");
}

#[tokio::test]
async fn unknown_pin_is_401_with_the_form_again() {
    let (_up, store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    let page = browser.login("9999", "/x").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("role=\"alert\"") && page.body.contains("Invalid PIN"), "{}", page.body);
    assert_eq!(page.field("rd"), "/x");
    assert!(page.set_cookie("__Host-keypin").is_none());
    assert_eq!(store.calls("secret-9999"), 1);
}

#[tokio::test]
async fn malformed_pins_never_reach_the_backend() {
    let (_up, store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    // Each form's token serves one POST: a fresh one for every case.
    let csrf = "CSRF";
    let cases: Vec<(String, StatusCode)> =
        ["12", "12345678901", "12a4", "1234/../x", "１２３４", "١٢٣٤", "12\u{0}4", " 1234", "1234 ", "", "+1234"]
            .into_iter()
            .map(|p| (format!("pin={}&csrf={csrf}", urlencode(p)), StatusCode::BAD_REQUEST))
            .chain([
                (format!("pin=%001234&csrf={csrf}"), StatusCode::BAD_REQUEST),
                (format!("pin=1234&pin=1234&csrf={csrf}"), StatusCode::BAD_REQUEST),
                (format!("pin=1234&pin=4567&csrf={csrf}"), StatusCode::BAD_REQUEST),
                (format!("csrf={csrf}"), StatusCode::BAD_REQUEST),
                (format!("pin={}&csrf={csrf}", "1".repeat(10_000)), StatusCode::PAYLOAD_TOO_LARGE),
            ])
            .collect();
    let origin = browser.url("");
    for (body, expected) in cases {
        let body = body.replace("CSRF", &browser.csrf().await);
        let page = browser.post_raw("/.keypin/login", body.clone(), Some(&origin)).await;
        assert_eq!(page.status, expected, "{body:.60}");
        assert!(page.set_cookie("__Host-keypin").is_none());
    }
    assert_eq!(store.total(), 0, "no malformed PIN may reach the secret store");
}

#[tokio::test]
async fn csrf_token_and_origin_are_both_checked() {
    let (_up, store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    let csrf = browser.csrf().await;
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [Case; 5] = [
        (&[("pin", "1234")], None),
        (&[("pin", "1234"), ("csrf", "wrong")], None),
        (&[("pin", "1234"), ("csrf", &csrf)], Some("https://evil.example")),
        (&[("pin", "1234"), ("csrf", &csrf)], Some("null")),
        (&[("pin", "1234"), ("csrf", &csrf)], Some("http://localhost")),
    ];
    for (fields, origin) in cases {
        let page = browser.post_form_from("/.keypin/login", fields, origin).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{fields:?} from {origin:?}");
        assert!(page.set_cookie("__Host-keypin").is_none());
    }
    // Without the CSRF cookie the token alone is worthless.
    let mut stranger = Browser::new(&gw);
    let page = stranger.post_form("/.keypin/login", &[("pin", "1234"), ("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(store.total(), 0);
    // And with both, it works.
    let page = browser.post_form("/.keypin/login", &[("pin", "1234"), ("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_login_post_comes_from_this_site_with_one_token_used_once() {
    let (_up, _store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    let post = |csrf: &str, extra: &str| format!("pin=1234&csrf={csrf}{extra}");
    let send = |browser: &mut Browser, body: String, origin: Option<String>, referer: Option<String>| {
        let mut req = Request::post(browser.url("/.keypin/login"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if let Some(r) = referer {
            req = req.header(header::REFERER, r);
        }
        if let Some(c) = browser.cookie_header() {
            req = req.header(header::COOKIE, c);
        }
        req.body(support::client::bytes(body)).unwrap()
    };
    let here = browser.url("");
    // No Origin: only a Referer of this site stands in for it.
    for referer in [None, Some("https://evil.example/login".to_owned()), Some("http://localhost/".to_owned())] {
        let csrf = browser.csrf().await;
        let req = send(&mut browser, post(&csrf, ""), None, referer.clone());
        assert_eq!(browser.send(req).await.status, StatusCode::FORBIDDEN, "Referer {referer:?}");
    }
    // Two csrf fields.
    let csrf = browser.csrf().await;
    let req = send(&mut browser, post(&csrf, &format!("&csrf={csrf}")), Some(here.clone()), None);
    assert_eq!(browser.send(req).await.status, StatusCode::FORBIDDEN, "two csrf fields");
    // A same-site Referer without Origin, and then the same form replayed.
    let csrf = browser.csrf().await;
    let req = send(&mut browser, post(&csrf, ""), None, Some(format!("{here}/.keypin/login")));
    assert_eq!(browser.send(req).await.status, StatusCode::SEE_OTHER);
    let req = send(&mut browser, post(&csrf, ""), Some(here.clone()), None);
    assert_eq!(browser.send(req).await.status, StatusCode::FORBIDDEN, "a token serves one POST");
}

#[tokio::test]
async fn backend_outage_at_login_is_503() {
    let (_up, store, gw) = setup("", "[secrets]\nrequest_timeout = \"300ms\"\n").await;
    for mode in [Mode::Unavailable, Mode::Hang] {
        store.set_mode(mode);
        let mut browser = Browser::new(&gw);
        let started = Instant::now();
        let page = browser.login("1234", "/").await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{mode:?}");
        assert!(page.body.contains("temporarily unavailable"), "{}", page.body);
        assert!(!page.body.contains("test outage"), "no internals on the page");
        assert!(started.elapsed() < Duration::from_secs(5), "bounded by request_timeout");
    }
    store.set_mode(Mode::Normal);
    let page = Browser::new(&gw).login("1234", "/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn redirect_targets_stay_on_this_site() {
    let (_up, _store, gw) = setup("", "").await;
    for rd in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/%09/evil.example",
        "/%5Cevil.example",
        "javascript:alert(1)",
        " /x",
    ] {
        let mut browser = Browser::new(&gw);
        let csrf = browser.csrf().await;
        let page = browser.post_form("/.keypin/login", &[("pin", "1234"), ("rd", rd), ("csrf", &csrf)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location(), "/", "{rd}");
    }
    let mut browser = Browser::new(&gw);
    let page = browser.login("1234", "/app/page?id=7").await;
    assert_eq!(page.location(), "/app/page?id=7");
}

#[tokio::test]
async fn forged_and_tampered_cookies_do_not_authenticate() {
    let (_up, _store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    browser.login("1234", "/").await;
    let real = browser.cookies["__Host-keypin"].clone();
    let mut flipped = real.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let other_key = support::gateway::TestGateway::start(
        "",
        &format!(
            "[session]\nkeys = [\"{}\"]\n{}",
            keypin::config::SessionKey::generate().to_base64().as_str(),
            route_table("http://127.0.0.1:9", "")
        ),
    )
    .await;
    let mut foreign = Browser::new(&other_key);
    foreign.login("1234", "/").await;
    let foreign_cookie = foreign.cookies["__Host-keypin"].clone();
    for value in [String::from_utf8(flipped).unwrap(), real[..real.len() / 2].to_owned(), String::new(), foreign_cookie]
    {
        let mut b = Browser::new(&gw);
        b.cookies.insert("__Host-keypin".into(), value.clone());
        let page = b.get("/echo").await;
        assert_eq!(page.status, StatusCode::FOUND, "cookie {value:.20}… let us in");
    }
    assert_eq!(browser.get("/echo").await.status, StatusCode::OK, "the real cookie works");
}

#[tokio::test]
async fn sessions_expire_and_rotated_keys_still_open_old_cookies() {
    let upstream = Upstream::spawn().await;
    let store = Arc::new(CountingStore::demo());
    let (old, new) = (keypin::config::SessionKey::generate(), keypin::config::SessionKey::generate());
    let with_keys = |keys: &[&keypin::config::SessionKey], ttl: &str| {
        let keys: Vec<String> = keys.iter().map(|k| format!("\"{}\"", k.to_base64().as_str())).collect();
        format!(
            "{FAST}[session]\nkeys = [{}]\nttl = \"{ttl}\"\nidle_timeout = \"{ttl}\"\n{}",
            keys.join(", "),
            route_table(&upstream.url(), "")
        )
    };
    let before = TestGateway::with_store("", &with_keys(&[&old], "8h"), store.clone()).await;
    let mut browser = Browser::new(&before);
    browser.login("1234", "/").await;
    let cookie = browser.cookies["__Host-keypin"].clone();

    let after = TestGateway::with_store("", &with_keys(&[&new, &old], "8h"), store.clone()).await;
    let mut rotated = Browser::new(&after);
    rotated.cookies.insert("__Host-keypin".into(), cookie);
    assert_eq!(rotated.get("/echo").await.status, StatusCode::OK, "an old-key cookie opens after rotation");

    let short = TestGateway::with_store("", &with_keys(&[&new], "1s"), store.clone()).await;
    let mut browser = Browser::new(&short);
    browser.login("1234", "/").await;
    assert_eq!(browser.get("/echo").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(browser.get("/echo").await.status, StatusCode::FOUND, "expired after ttl");
}

#[tokio::test]
async fn logout_revokes_the_session_even_for_a_replayed_cookie() {
    let (_up, _store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    browser.login("1234", "/").await;
    let stolen = browser.cookies["__Host-keypin"].clone();
    assert_eq!(browser.get("/echo").await.status, StatusCode::OK);

    let page = browser.get("/.keypin/logout").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.field("csrf");
    let page = browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/.keypin/login?signed_out=1");
    let notice = browser.get(page.location()).await;
    assert!(notice.body.contains("You have been signed out."), "{}", notice.body);
    assert!(!browser.get("/.keypin/login").await.body.contains("signed out"), "only right after");
    assert!(!browser.cookies.contains_key("__Host-keypin"), "the cookie is cleared");

    let mut replay = Browser::new(&gw);
    replay.cookies.insert("__Host-keypin".into(), stolen);
    assert_eq!(replay.get("/echo").await.status, StatusCode::FOUND, "revoked server-side");
}

#[tokio::test]
async fn a_new_session_is_minted_at_every_login() {
    let (_up, _store, gw) = setup("", "").await;
    let mut browser = Browser::new(&gw);
    browser.login("1234", "/").await;
    let first = browser.cookies["__Host-keypin"].clone();
    browser.login("4567", "/").await;
    let second = browser.cookies["__Host-keypin"].clone();
    assert_ne!(first, second);
    let seen = Seen::parse(browser.get("/echo").await.body.as_bytes());
    assert_eq!(seen.all("authorization"), [basic("user2:p@ssw0rd2")]);
}

#[tokio::test]
async fn concurrent_identical_logins_make_one_backend_lookup() {
    let (_up, store, gw) = setup("", "").await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut browser = Browser::new(&gw);
        let csrf = browser.csrf().await;
        tasks.push(tokio::spawn(async move {
            browser.post_form("/.keypin/login", &[("pin", "1212"), ("csrf", &csrf)]).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::SEE_OTHER);
    }
    assert_eq!(store.calls("secret-1212"), 1);
}

#[tokio::test]
async fn deleted_or_changed_secrets_take_effect_within_the_cache_ttl() {
    let (_up, _dir, secrets, gw) =
        file_gateway("\"secret-7777\" = \"bob:first\"\n", "cache_ttl = \"1s\"\nnegative_cache_ttl = \"1s\"\n").await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("7777", "/").await.status, StatusCode::SEE_OTHER);
    let seen = Seen::parse(browser.get("/echo").await.body.as_bytes());
    assert_eq!(seen.all("authorization"), [basic("bob:first")]);

    std::fs::write(&secrets, "\"secret-7777\" = \"bob:second\"\n").unwrap();
    let changed = poll(Duration::from_secs(5), || async {
        let page = Browser::get(&mut browser_clone(&browser, &gw), "/echo").await;
        Seen::parse(page.body.as_bytes()).all("authorization") == [basic("bob:second")]
    })
    .await;
    assert!(changed, "a changed password reaches the upstream within cache_ttl + reload");

    std::fs::write(&secrets, "# nobody\n").unwrap();
    let ended = poll(Duration::from_secs(5), || async {
        Browser::get(&mut browser_clone(&browser, &gw), "/echo").await.status == StatusCode::FOUND
    })
    .await;
    assert!(ended, "a deleted secret ends the session within cache_ttl + reload");
}

#[tokio::test]
async fn a_session_ends_when_its_pin_is_given_to_another_user() {
    let (_up, store, gw) = setup("", "[secrets]\ncache_ttl = \"1s\"\n").await;
    store.set("secret-7777", "alice:pw-a");
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("7777", "/").await.status, StatusCode::SEE_OTHER);
    let seen = Seen::parse(browser.get("/echo").await.body.as_bytes());
    assert_eq!(seen.all("authorization"), [basic("alice:pw-a")]);

    // The same PIN now holds bob's account: alice's session must not act as bob.
    store.set("secret-7777", "bob:pw-b");
    let ended = poll(Duration::from_secs(5), || async {
        let page = Browser::get(&mut browser_clone(&browser, &gw), "/echo").await;
        assert!(!page.body.contains(&basic("bob:pw-b")), "alice's session reached the app as bob");
        page.status == StatusCode::FOUND
    })
    .await;
    assert!(ended, "the session ends within cache_ttl");
    // Its cookie stays dead once the cache would answer alice again.
    store.set("secret-7777", "alice:pw-a");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(browser_clone(&browser, &gw).get("/echo").await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn answers_built_with_an_identity_are_private_and_a_refreshed_cookie_is_not_stored() {
    let (_up, _store, gw) = setup("public_paths = [\"/echo/public/\"]", "[session]\nidle_timeout = \"8s\"\n").await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    let page = browser.get("/echo").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers[header::CACHE_CONTROL], "private");
    assert!(page.headers.get(header::SET_COOKIE).is_none());
    let public = browser.get("/echo/public/x").await;
    assert!(public.headers.get(header::CACHE_CONTROL).is_none(), "no identity, nothing added");
    // Past a quarter of the idle timeout the cookie is re-issued: never stored.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let page = browser.get("/echo").await;
    assert!(page.headers.get(header::SET_COOKIE).is_some(), "re-issued");
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn a_session_in_use_outlives_a_short_idle_timeout() {
    let (_up, _store, gw) = setup("", "[session]\nidle_timeout = \"2s\"\n").await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(browser.get("/echo").await.status, StatusCode::OK, "used every 0.6 s, it stays alive");
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(browser.get("/echo").await.status, StatusCode::FOUND, "idle for longer than 2 s, it ends");
}

#[tokio::test]
async fn a_secret_added_to_the_file_signs_in_at_once_though_it_was_just_refused() {
    let (_up, _dir, secrets, gw) = file_gateway("\"secret-1111\" = \"a:1\"\n", "negative_cache_ttl = \"30s\"\n").await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("7777", "/").await.status, StatusCode::UNAUTHORIZED, "not in the file yet");
    std::fs::write(&secrets, "\"secret-1111\" = \"a:1\"\n\"secret-7777\" = \"new:pw\"\n").unwrap();
    let signed_in = poll(Duration::from_secs(5), || async {
        Browser::new(&gw).login("7777", "/").await.status == StatusCode::SEE_OTHER
    })
    .await;
    assert!(signed_in, "the file was re-read: its answer replaces the remembered refusal");
}

/// A gateway on a secrets file that starts as `content`; `secrets_extra` adds keys
/// to `[secrets]`. The file's path comes back, to be edited.
async fn file_gateway(
    content: &str,
    secrets_extra: &str,
) -> (Upstream, tempfile::TempDir, std::path::PathBuf, TestGateway) {
    let upstream = Upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(&secrets, content).unwrap();
    let config = format!(
        "{FAST}[secrets]\npath = \"{}\"\n{secrets_extra}{}",
        secrets.display(),
        route_table(&upstream.url(), "")
    );
    let gw = TestGateway::start("", &config).await;
    (upstream, dir, secrets, gw)
}

fn browser_clone(b: &Browser, gw: &TestGateway) -> Browser {
    let mut copy = Browser::new(gw);
    copy.cookies = b.cookies.clone();
    copy
}

async fn poll<F, Fut>(limit: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn public_paths_skip_login_but_identity_headers_are_still_stripped() {
    let (_up, store, gw) = setup("public_paths = [\"/echo/public/\"]", "").await;
    let mut browser = Browser::new(&gw);
    let req = Request::get(browser.url("/echo/public/logo.png"))
        .header(header::AUTHORIZATION, "Basic Zm9yZ2Vk")
        .header("x-forwarded-user", "admin")
        .body(empty())
        .unwrap();
    let page = browser.send(req).await;
    assert_eq!(page.status, StatusCode::OK);
    let seen = Seen::parse(page.body.as_bytes());
    assert!(seen.all("authorization").is_empty() && seen.all("x-forwarded-user").is_empty());
    assert_eq!(browser.get("/echo/publicity").await.status, StatusCode::FOUND);
    assert_eq!(store.total(), 0);
}

#[tokio::test]
async fn login_answers_are_padded_to_min_response() {
    let upstream = Upstream::spawn().await;
    let store = Arc::new(CountingStore::demo());
    let config = format!("[pin]\nmin_response = \"400ms\"\n{}", route_table(&upstream.url(), ""));
    let gw = TestGateway::with_store("", &config, store).await;
    for pin in ["1234", "9876"] {
        let mut browser = Browser::new(&gw);
        let csrf = browser.csrf().await;
        let started = Instant::now();
        browser.post_form("/.keypin/login", &[("pin", pin), ("csrf", &csrf)]).await;
        assert!(started.elapsed() >= Duration::from_millis(400), "PIN {pin} answered early");
    }
}
