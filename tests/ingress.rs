//! keypin behind a real ingress in forward-auth mode: Debian's nginx
//! (`auth_request`) and Caddy (`forward_auth`), each running the shipped example
//! config from `deploy/ingress/` rendered for the test. Through the ingress:
//! sign-in, the identity the app sees (never a client-forged one), public paths,
//! logout, and per-client limits that count the real client behind it.

mod support;

use std::net::IpAddr;

use http::{Request, StatusCode, header};
use support::browser::Browser;
use support::client::empty;
use support::gateway::{TestGateway, route_table};
use support::ingress::{Ingress, Render, require};
use support::store::CountingStore;
use support::upstream::{Seen, Upstream};

#[derive(Clone, Copy)]
enum Kind {
    Nginx,
    Caddy,
}

struct Front {
    _upstream: Upstream,
    gw: TestGateway,
    ingress: Ingress,
}

/// keypin (plain listener, trusting loopback) behind `kind`, in front of the test
/// upstream.
async fn front(kind: Kind, limits: &str) -> Front {
    let program = match kind {
        Kind::Nginx => "nginx",
        Kind::Caddy => "caddy",
    };
    require(program);
    let upstream = Upstream::spawn().await;
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\n{limits}\n{}host = \"localhost\"\ninject = \"both\"\n\
         public_paths = [\"/static/\"]\n",
        route_table(&upstream.url(), "")
    );
    let server = "plain_listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]";
    let gw = TestGateway::with_store(server, &config, std::sync::Arc::new(CountingStore::demo())).await;
    let (cert, key) = (gw.cert(), gw.dir.path().join("key.pem"));
    let render = Render { keypin: gw.plain.unwrap(), app: upstream.addr, cert: &cert, key: &key };
    let ingress = match kind {
        Kind::Nginx => Ingress::nginx(&render),
        Kind::Caddy => Ingress::caddy(&render),
    };
    Front { _upstream: upstream, gw, ingress }
}

impl Front {
    fn browser(&self, from: Option<IpAddr>) -> Browser {
        Browser::connect_from(self.ingress.port, &self.gw.cert(), from)
    }
}

/// A GET through `browser` with its cookies and a forged identity.
async fn forged_get(browser: &mut Browser, path: &str) -> (StatusCode, Seen) {
    let mut req = Request::get(browser.url(path))
        .header(header::AUTHORIZATION, "Basic Zm9yZ2VkOmZvcmdlZA==")
        .header("x-forwarded-user", "admin")
        .header("x-remote-user", "admin");
    if let Some(cookies) = browser.cookie_header() {
        req = req.header(header::COOKIE, cookies);
    }
    let page = browser.send(req.body(empty()).unwrap()).await;
    (page.status, Seen::parse(page.body.as_bytes()))
}

async fn sign_in_use_and_sign_out_through(kind: Kind) {
    let front = front(kind, "").await;
    let mut browser = front.browser(None);
    let first = browser.get("/echo").await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.body);
    let login = format!("https://localhost:{}/.keypin/login?rd=%2Fecho", front.ingress.port);
    assert_eq!(first.location(), login);

    assert_eq!(browser.login("1234", "/echo").await.status, StatusCode::SEE_OTHER);
    let (status, seen) = forged_get(&mut browser, "/echo").await;
    assert_eq!(status, StatusCode::OK);
    let authorization = seen.one("authorization").expect("keypin's identity");
    assert!(authorization.starts_with("Basic ") && authorization != "Basic Zm9yZ2VkOmZvcmdlZA==");
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("user1"), "never the client's own value");
    assert_eq!(seen.one("x-remote-user"), None);

    // A public path passes without a session and without any identity.
    let mut stranger = front.browser(None);
    let (status, seen) = forged_get(&mut stranger, "/static/app.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((seen.one("authorization"), seen.one("x-forwarded-user")), (None, None));

    // Logout through the ingress revokes the session, even for a copied cookie.
    let copied = browser.cookies.clone();
    let csrf = browser.get("/.keypin/logout").await.field("csrf");
    assert_eq!(browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
    let mut thief = front.browser(None);
    thief.cookies = copied;
    assert_eq!(thief.get("/echo").await.status, StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx (apt-get install nginx-light); cargo test -- --include-ignored"]
async fn through_nginx_sign_in_use_and_sign_out() {
    sign_in_use_and_sign_out_through(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs caddy (apt-get install caddy); cargo test -- --include-ignored"]
async fn through_caddy_sign_in_use_and_sign_out() {
    sign_in_use_and_sign_out_through(Kind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx (apt-get install nginx-light); cargo test -- --include-ignored"]
async fn limits_count_the_real_client_behind_nginx_and_untrusted_peers_are_refused() {
    let front = front(Kind::Nginx, "login_per_ip = \"2/min\"\nlockout_after = 100").await;
    let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
    let mut first = front.browser(Some(a));
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for pin in ["9001", "9002", "9003"] {
            s.push(first.attempt(pin, None).await.status.as_u16());
        }
        s
    };
    assert_eq!(statuses, [401, 401, 429], "two attempts a minute for 127.0.0.2");
    let mut second = front.browser(Some(b));
    assert_eq!(second.attempt("9004", None).await.status, StatusCode::UNAUTHORIZED, "127.0.0.3 has its own budget");

    // Straight to keypin's plain listener from a peer it does not trust.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((a, 0).into()).unwrap();
    let mut tcp = socket.connect(front.gw.plain.unwrap()).await.unwrap();
    let ask = "GET /.keypin/auth HTTP/1.1\r\nHost: localhost\r\nX-Original-URI: /echo\r\nConnection: close\r\n\r\n";
    tcp.write_all(ask.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}
