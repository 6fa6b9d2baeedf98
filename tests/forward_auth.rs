//! Forward-auth: `/.keypin/auth` answering an ingress's subrequests, on the plain
//! listener and the TLS one, with the headers Traefik and Caddy send
//! (`X-Forwarded-Method/Proto/Host/Uri`) and those nginx sends
//! (`X-Original-URI`). The real nginx in front: `tests/ingress.rs`.

mod support;

use http::{Request, StatusCode};
use support::browser::Browser;
use support::client::{Proto, empty, plain_exchange, plain_exchange_with, send};
use support::gateway::{TestGateway, route_table};
use support::store::CountingStore;
use support::upstream::Upstream;

/// keypin with a plain listener, trusting loopback as its ingress; the route
/// `app.test` injects both identities, `/static/` is public.
async fn gateway(trusted: &str) -> (Upstream, TestGateway) {
    let upstream = Upstream::spawn().await;
    let route = format!(
        "[pin]\nmin_response = \"1ms\"\n{}host = \"app.test\"\ninject = \"both\"\nuser_header = \"X-Forwarded-User\"\n\
         public_paths = [\"/static/\"]\n",
        route_table(&upstream.url(), "")
    );
    let server = format!("plain_listen = \"127.0.0.1:0\"\ntrusted_proxies = [{trusted}]");
    let gw = TestGateway::with_store(&server, &route, std::sync::Arc::new(CountingStore::demo())).await;
    (upstream, gw)
}

/// A session cookie for PIN 1234, signed in on the TLS listener.
async fn session(gw: &TestGateway) -> String {
    let mut browser = Browser::new(gw);
    // The route is for app.test; keypin's own pages answer on any host.
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    format!("__Host-keypin={}", browser.cookies["__Host-keypin"])
}

fn traefik<'a>(method: &'a str, uri: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("X-Forwarded-Method", method),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "app.test"),
        ("X-Forwarded-Uri", uri),
        ("X-Forwarded-For", "198.51.100.20"),
    ];
    h.extend_from_slice(extra);
    h
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_session_passes_with_exactly_the_routes_identity() {
    let (_up, gw) = gateway("\"127.0.0.1\"").await;
    let plain = gw.plain.unwrap();
    let cookie = session(&gw).await;
    let (status, head, body) =
        plain_exchange(plain, "GET", "/.keypin/auth", &traefik("GET", "/reports?y=1", &[("Cookie", &cookie)])).await;
    assert_eq!(status, 200, "{head}");
    assert!(body.is_empty());
    assert!(header(&head, "authorization").is_some_and(|v| v.starts_with("Basic ")), "{head}");
    assert_eq!(header(&head, "x-forwarded-user"), Some("user1"));
    // The same question on the TLS listener, and a public path without identity.
    let req = Request::get(gw.url("/.keypin/auth"))
        .header("x-forwarded-uri", "/static/app.css")
        .header("x-forwarded-host", "app.test")
        .body(empty())
        .unwrap();
    let (resp, _) = send(&gw.client(Proto::H1), req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("authorization").is_none() && resp.headers().get("x-forwarded-user").is_none());
}

#[tokio::test]
async fn without_a_session_browsers_go_to_the_login_page_and_others_get_401() {
    let (_up, gw) = gateway("\"127.0.0.1\"").await;
    let plain = gw.plain.unwrap();
    let (status, head, _) =
        plain_exchange(plain, "GET", "/.keypin/auth", &traefik("GET", "/reports?y=1", &[("Accept", "text/html")]))
            .await;
    assert_eq!(status, 302);
    assert_eq!(header(&head, "location"), Some("https://app.test/.keypin/login?rd=%2Freports%3Fy%3D1"));
    let (status, _, _) = plain_exchange(plain, "GET", "/.keypin/auth", &traefik("POST", "/api", &[])).await;
    assert_eq!(status, 401);
    // nginx: 401 with the absolute login URL, whatever the request.
    let nginx = [("X-Original-URI", "/reports"), ("Host", "app.test"), ("Accept", "text/html")];
    let (status, head, _) = plain_exchange(plain, "GET", "/.keypin/auth", &nginx).await;
    assert_eq!(status, 401);
    assert_eq!(header(&head, "location"), Some("https://app.test/.keypin/login?rd=%2Freports"));
    // A revoked session is no session.
    let cookie = session(&gw).await;
    let mut browser = Browser::new(&gw);
    browser.cookies.insert("__Host-keypin".into(), cookie.trim_start_matches("__Host-keypin=").into());
    let csrf = browser.get("/.keypin/logout").await.field("csrf");
    browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await;
    let (status, _, _) =
        plain_exchange(plain, "GET", "/.keypin/auth", &traefik("GET", "/", &[("Cookie", &cookie)])).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn bad_questions_get_clear_answers_and_untrusted_peers_nothing() {
    let (_up, gw) = gateway("\"127.0.0.1\"").await;
    let plain = gw.plain.unwrap();
    let no_uri = [("X-Forwarded-Host", "app.test")];
    assert_eq!(plain_exchange(plain, "GET", "/.keypin/auth", &no_uri).await.0, 400);
    let relative = traefik("GET", "reports", &[]);
    assert_eq!(plain_exchange(plain, "GET", "/.keypin/auth", &relative).await.0, 400);
    let dots = traefik("GET", "/static/../admin", &[]);
    assert_eq!(plain_exchange(plain, "GET", "/.keypin/auth", &dots).await.0, 400, "never a guessed path");
    let other_host = [("X-Forwarded-Uri", "/"), ("X-Forwarded-Host", "elsewhere.test")];
    assert_eq!(plain_exchange(plain, "GET", "/.keypin/auth", &other_host).await.0, 404);

    let (_up, untrusting) = gateway("").await;
    let (status, head, _) =
        plain_exchange(untrusting.plain.unwrap(), "GET", "/.keypin/auth", &traefik("GET", "/", &[])).await;
    assert_eq!(status, 403, "{head}");
}

#[tokio::test]
async fn the_plain_listener_serves_the_login_page_with_secure_cookies() {
    let (_up, gw) = gateway("\"127.0.0.1\"").await;
    let (status, head, body) =
        plain_exchange(gw.plain.unwrap(), "GET", "/.keypin/login", &[("Host", "app.test")]).await;
    assert_eq!(status, 200);
    assert!(body.contains("name=\"pin\""), "{body}");
    let cookie = header(&head, "set-cookie").expect("the CSRF cookie");
    assert!(cookie.contains("Secure"), "the browser speaks https to the ingress: {cookie}");
}

#[tokio::test]
async fn a_route_for_forward_auth_only_needs_no_upstream() {
    let config = "[[route]]\nname = \"hr\"\nhost = \"hr.test\"\ninject = \"header\"\n";
    let gw = TestGateway::with_store(
        "plain_listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]",
        config,
        std::sync::Arc::new(CountingStore::demo()),
    )
    .await;
    let cookie = session(&gw).await;
    let ask = [("X-Forwarded-Uri", "/"), ("X-Forwarded-Host", "hr.test"), ("Cookie", cookie.as_str())];
    let (status, head, _) = plain_exchange(gw.plain.unwrap(), "GET", "/.keypin/auth", &ask).await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "x-forwarded-user"), Some("user1"));
    // keypin itself serves nothing there.
    let (status, _, _) =
        plain_exchange(gw.plain.unwrap(), "GET", "/", &[("Host", "hr.test"), ("Cookie", cookie.as_str())]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn behind_an_ingress_that_rewrites_host_the_forwarded_host_is_the_sites() {
    let (_up, gw) = gateway("\"127.0.0.1\"").await;
    let plain = gw.plain.unwrap();
    let via = [("Host", "keypin.internal:8081"), ("X-Forwarded-Host", "app.test"), ("X-Forwarded-Proto", "https")];
    let (status, head, body) = plain_exchange(plain, "GET", "/.keypin/login", &via).await;
    assert_eq!(status, 200);
    let csrf_cookie = header(&head, "set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).unwrap() + marker.len();
    let token = &body[start..start + body[start..].find('"').unwrap()];
    let mut post = via.to_vec();
    post.extend([
        ("Origin", "https://app.test"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", csrf_cookie.as_str()),
    ]);
    let form = format!("pin=1234&csrf={}", support::browser::urlencode(token));
    let (status, head, _) = plain_exchange_with(plain, "POST", "/.keypin/login", &post, &form).await;
    assert_eq!(status, 303, "the browser's origin is the forwarded host's: {head}");
}
