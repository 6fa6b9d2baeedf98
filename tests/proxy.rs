//! The streaming reverse proxy over real TLS: HTTP/1.1 and HTTP/2, header rewriting,
//! WebSocket, upstream failures, header limits and slow clients.

mod support;

/// These tests are about proxying, not login: every path of the route is public
/// (identity headers are still stripped).
const PUBLIC: &str = "public_paths = [\"/\"]";

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use support::browser::Browser;
use support::client::{Proto, bytes, empty, plain_exchange, raw_tls, send, tls_config};
use support::gateway::{TestGateway, route_table};
use support::upstream::{Seen, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

async fn gateway_to(upstream: &Upstream, server_extra: &str) -> TestGateway {
    TestGateway::start(server_extra, &route_table(&upstream.url(), PUBLIC)).await
}

/// Send a hand-written HTTP/1.1 request over TLS and read until the gateway closes
/// (or for 5 s at most: a switched protocol stays open).
async fn raw_exchange(gw: &TestGateway, request: &str) -> String {
    let mut tls = raw_tls(gw.addr, &gw.cert()).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn each_worker_reuses_its_own_upstream_connections() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "workers = 2").await;
    // Six client connections, handed in turn to the two workers.
    let clients: Vec<_> = (0..6).map(|_| gw.client(Proto::H1)).collect();
    let mut upstream_conns = std::collections::HashSet::new();
    for _ in 0..4 {
        for client in &clients {
            let (resp, body) = send(client, Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
            assert_eq!(resp.status(), StatusCode::OK);
            upstream_conns.insert(Seen::parse(&body).0["peer"].as_str().unwrap().to_owned());
        }
    }
    assert!(upstream_conns.len() >= 2, "each worker has its own pool: {upstream_conns:?}");
    assert!(upstream_conns.len() <= 6, "24 sequential requests reuse upstream connections: {upstream_conns:?}");
}

/// An upstream that answers one request per connection (keep-alive, as far as the
/// client can tell) and closes the connection soon after: idle connections die
/// under the pool's feet.
async fn forgetful_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_connections_closed_while_idle_are_not_used_again() {
    let upstream = forgetful_upstream().await;
    let gw = TestGateway::start("workers = 1", &route_table(&format!("http://{upstream}"), PUBLIC)).await;
    let client = gw.client(Proto::H1);
    for i in 0..5 {
        let (resp, body) = send(&client, Request::get(gw.url("/")).body(empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        assert_eq!(&body[..], b"ok");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

#[tokio::test]
async fn a_body_abandoned_midway_does_not_spoil_the_next_answer() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "workers = 1").await;
    let mut tls = raw_tls(gw.addr, &gw.cert()).await;
    tls.write_all(b"GET /bytes/50000000 HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = tls.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(tls);
    // The upstream connection that carried the abandoned body must not carry the next answer.
    let client = gw.client(Proto::H1);
    for _ in 0..3 {
        let (resp, body) = send(&client, Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(Seen::parse(&body).uri(), "/echo");
    }
}

#[tokio::test]
async fn without_preserve_host_the_upstream_sees_its_own_authority() {
    let upstream = Upstream::spawn().await;
    let gw = TestGateway::start("", &route_table(&upstream.url(), &format!("{PUBLIC}\npreserve_host = false"))).await;
    let (resp, body) = send(&gw.client(Proto::H1), Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = Seen::parse(&body);
    assert_eq!(seen.one("host"), Some(upstream.addr.to_string()));
    assert_eq!(seen.one("x-forwarded-host"), Some(format!("localhost:{}", gw.addr.port())));
}

#[tokio::test]
async fn http1_and_http2_reach_the_upstream_and_come_back_intact() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let authority = format!("localhost:{}", gw.addr.port());
    for proto in [Proto::H1, Proto::H2] {
        let client = gw.client(proto);
        let req = Request::post(gw.url("/echo/a%20b?x=1&y=%2F"))
            .header("x-custom", "one")
            .header("x-custom", "two")
            .body(bytes("payload"))
            .unwrap();
        let (resp, body) = send(&client, req).await;
        assert_eq!(resp.status(), StatusCode::OK, "{proto:?}");
        let expected = if proto == Proto::H2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
        assert_eq!(resp.version(), expected);
        assert!(!resp.headers().contains_key("x-upstream-hop"), "hop-by-hop from the upstream must go");
        let seen = Seen::parse(&body);
        assert_eq!(seen.0["method"], "POST");
        assert_eq!(seen.uri(), "/echo/a%20b?x=1&y=%2F");
        assert_eq!(seen.0["version"], "HTTP/1.1", "upstream is spoken to in HTTP/1.1");
        assert_eq!(seen.all("x-custom"), ["one", "two"], "{proto:?}: repeated headers keep order");
        assert_eq!(seen.one("host").as_deref(), Some(authority.as_str()));
        assert_eq!(seen.one("x-forwarded-host").as_deref(), Some(authority.as_str()));
        assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    }
}

#[tokio::test]
async fn request_and_response_bodies_stream_both_ways() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    for proto in [Proto::H1, Proto::H2] {
        let client = gw.client(proto);
        let (resp, body) = send(&client, Request::get(gw.url("/bytes/3000000")).body(empty()).unwrap()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(body.len(), 3_000_000);
        let upload = bytes(vec![7u8; 2_500_000]);
        let (resp, body) = send(&client, Request::put(gw.url("/sink")).body(upload).unwrap()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(&body[..], br#"{"bytes":2500000}"#);
    }
}

#[tokio::test]
async fn forged_identity_and_forwarding_headers_never_reach_the_upstream() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    // A raw request, so spellings a client library would refuse or merge get through.
    let text = raw_exchange(
        &gw,
        "GET /echo HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Basic YWRtaW46YWRtaW4=\r\nAuthorization: Bearer x\r\n\
         Proxy-Authorization: Basic eA==\r\nX-Forwarded-User: admin\r\nX_Forwarded_User: admin\r\n\
         X.Forwarded.User: admin\r\nRemote-User: admin\r\nX-Remote-User: admin\r\n\
         X-Auth-Request-User: admin\r\nX-Auth-Request-Email: a@example.com\r\n\
         X-Forwarded-For: 198.51.100.201\r\nX-Forwarded-For: 198.51.100.202\r\nX-Forwarded-Proto: http\r\n\
         X-Forwarded-Host: evil.example\r\nForwarded: for=198.51.100.201\r\nX-Real-IP: 198.51.100.201\r\n\
         Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\
         TE: trailers\r\nX-Kept: 1\r\nX-Kept: 2\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let seen = Seen::parse(text.split("\r\n\r\n").nth(1).unwrap().as_bytes());
    let names = seen.names();
    for gone in [
        "authorization",
        "proxy-authorization",
        "x-forwarded-user",
        "x_forwarded_user",
        "x.forwarded.user",
        "remote-user",
        "x-remote-user",
        "x-auth-request-user",
        "x-auth-request-email",
        "forwarded",
        "x-hop",
        "keep-alive",
        "te",
    ] {
        assert!(!names.iter().any(|n| n == gone), "{gone} reached the upstream: {names:?}");
    }
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.one("x-forwarded-host").as_deref(), Some("localhost"));
    assert_eq!(seen.one("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.all("x-kept"), ["1", "2"]);
}

#[tokio::test]
async fn trusted_proxy_chains_are_extended_not_replaced() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "trusted_proxies = [\"127.0.0.0/8\"]").await;
    let req = Request::get(gw.url("/echo"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .body(empty())
        .unwrap();
    let (_, body) = send(&gw.client(Proto::H1), req).await;
    let seen = Seen::parse(&body);
    assert_eq!(seen.all("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    let mut ws = websocket(&gw, &browser.cookies["__Host-keypin"]).await;
    for text in ["hello", "second message"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().as_ref(), [0u8, 1, 2, 255]);
}

/// A WebSocket through `gw` for the session `session` (the cookie's value).
async fn websocket(
    gw: &TestGateway,
    session: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tls = raw_tls(gw.addr, &gw.cert()).await;
    let mut req = format!("wss://localhost:{}/ws", gw.addr.port()).into_client_request().unwrap();
    let cookie = format!("__Host-keypin={session}");
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await.expect("upgrade succeeds");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

#[tokio::test]
async fn a_websocket_closes_when_its_session_is_logged_out() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    let mut ws = websocket(&gw, &browser.cookies["__Host-keypin"]).await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(), "before");

    let csrf = browser.get("/.keypin/logout").await.field("csrf");
    assert_eq!(browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
    // Closed within a check or two: the stream ends (or errs), and nothing echoes.
    let ended = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            let _ = ws.send(Message::text("after")).await;
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the upgraded connection outlived its session");
}

#[tokio::test]
async fn a_websocket_holds_its_connection_slot_while_it_lasts() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "max_connections = 1").await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login("1234", "/").await.status, StatusCode::SEE_OTHER);
    let session = browser.cookies["__Host-keypin"].clone();
    drop(browser);
    // The sign-in's connection closes; then the WebSocket takes the only slot.
    let mut ws = loop {
        match tokio::time::timeout(Duration::from_secs(1), websocket(&gw, &session)).await {
            Ok(ws) => break ws,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let blocked = tokio::time::timeout(Duration::from_millis(800), raw_tls(gw.addr, &gw.cert())).await;
    assert!(blocked.is_err(), "a second connection was served while the WebSocket held the only slot");
    ws.close(None).await.unwrap();
    drop(ws);
    let served = tokio::time::timeout(Duration::from_secs(5), raw_tls(gw.addr, &gw.cert())).await;
    assert!(served.is_ok(), "the slot comes back when the WebSocket ends");
}

#[tokio::test]
async fn no_routes_user_header_reaches_another_routes_app_in_any_spelling() {
    let upstream = Upstream::spawn().await;
    let config = format!(
        "[[route]]\nname = \"wiki\"\nhost = \"wiki.test\"\nupstream = \"{}\"\ninject = \"header\"\n\
         user_header = \"X-Webauth-User\"\n{}",
        upstream.url(),
        route_table(&upstream.url(), PUBLIC)
    );
    let gw = TestGateway::start("", &config).await;
    for proto in [Proto::H1, Proto::H2] {
        for name in ["x-webauth-user", "x_webauth_user", "x.webauth.user"] {
            let req = Request::get(gw.url("/echo")).header(name, "admin").body(empty()).unwrap();
            let (resp, body) = send(&gw.client(proto), req).await;
            assert_eq!(resp.status(), StatusCode::OK);
            let seen = Seen::parse(&body);
            assert!(seen.names().iter().all(|n| !n.replace(['_', '.'], "-").eq_ignore_ascii_case("x-webauth-user")));
        }
    }
}

#[tokio::test]
async fn every_answer_carries_hsts_and_every_page_the_same_security_headers() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let client = gw.client(Proto::H1);
    for (path, page) in [("/echo", false), ("/.keypin/login", true), ("/%2e%2e/x", true), ("/.keypin/nothing", true)] {
        let (resp, _) = send(&client, Request::get(gw.url(path)).body(empty()).unwrap()).await;
        assert_eq!(resp.headers()["strict-transport-security"], "max-age=31536000", "{path}");
        if page {
            for header in ["x-frame-options", "x-content-type-options", "content-security-policy", "referrer-policy"] {
                assert!(resp.headers().contains_key(header), "{path} ({}) has no {header}", resp.status());
            }
            assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        }
    }
    let off = TestGateway::start("hsts_max_age = \"0s\"", &route_table(&upstream.url(), PUBLIC)).await;
    let (resp, _) = send(&off.client(Proto::H1), Request::get(off.url("/echo")).body(empty()).unwrap()).await;
    assert!(!resp.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn a_form_that_trickles_into_keypins_own_pages_is_408() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "header_read_timeout = \"1s\"").await;
    for path in ["/.keypin/login", "/.keypin/logout"] {
        let mut tls = raw_tls(gw.addr, &gw.cert()).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 100\r\n\r\npin=1"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = vec![0u8; 4096];
        // One more byte every 300 ms would keep a connection open for hours.
        let read = async {
            loop {
                tokio::select! {
                    n = tls.read(&mut buf) => return n.unwrap(),
                    () = tokio::time::sleep(Duration::from_millis(300)) => { let _ = tls.write_all(b"2").await; }
                }
            }
        };
        let n = tokio::time::timeout(Duration::from_secs(5), read).await.expect("an answer within the bound");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}: {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault_400() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    for body in ["zz\r\nhello\r\n0\r\n\r\n", "5\r\nhello world\r\n0\r\n\r\n"] {
        let answer = raw_exchange(
            &gw,
            &format!("POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{body:?}: {answer}");
    }
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_head_timeout_and_ends_at_its_own() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "header_read_timeout = \"1s\"\nkeepalive_timeout = \"3s\"").await;
    let mut tls = raw_tls(gw.addr, &gw.cert()).await;
    let get = b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n";
    tls.write_all(get).await.unwrap();
    assert!(read_answer(&mut tls).await.starts_with("HTTP/1.1 200"));
    // Idle past the head timeout: a keep-alive wait is no slowloris.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    tls.write_all(get).await.unwrap();
    assert!(read_answer(&mut tls).await.starts_with("HTTP/1.1 200"), "closed at header_read_timeout");
    let quiet = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open 8 s after its last answer");
    assert!(quiet.elapsed() >= Duration::from_millis(2900), "closed after {:?}", quiet.elapsed());
}

#[tokio::test]
async fn an_http2_connection_with_no_stream_is_closed_after_the_idle_time() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "header_read_timeout = \"1s\"\nkeepalive_timeout = \"30s\"").await;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls_config(&gw.cert(), &[b"h2"])));
    // The preface and an empty SETTINGS frame, then nothing: no request ever.
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let mut tls = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        tls
    };
    let mut silent = connect().await;
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open after 5 s");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed after {:?}", started.elapsed());
    // A GOAWAY frame (type 7) came before the close.
    assert!(rest.windows(4).any(|w| w[3] == 7 && w[..3] == [0, 0, 8]), "no GOAWAY in {rest:?}");

    // A connection that is used stays open while it is.
    let client = gw.client(Proto::H2);
    for _ in 0..3 {
        let (resp, _) = send(&client, Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

#[tokio::test]
async fn an_upstream_connection_still_taking_an_upload_is_not_lent_again() {
    let upstream = Upstream::spawn().await;
    // One worker: one pool, which the second request must not be stuck in.
    let gw = gateway_to(&upstream, "workers = 1\nupstream_timeout = \"3s\"").await;
    // An upload the upstream answers before reading it all, sent slowly.
    let mut slow = raw_tls(gw.addr, &gw.cert()).await;
    let head = "POST /early HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n0123456789";
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "the early answer");
    // Another user's request, while that upload is still being sent upstream.
    let started = std::time::Instant::now();
    let (resp, _) = send(&gw.client(Proto::H1), Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?} for a busy connection", started.elapsed());
    drop(slow);
}

#[tokio::test]
async fn a_missing_repeated_or_forged_host_is_400() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    for head in [
        "GET /echo HTTP/1.1\r\nHost: FORGED@localhost\r\n",
        "GET /echo HTTP/1.1\r\n",
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n",
        "GET /.keypin/login HTTP/1.1\r\nHost: a@localhost\r\n",
    ] {
        let answer = raw_exchange(&gw, &format!("{head}Connection: close\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
    }
    let answer = raw_exchange(&gw, "GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_websocket_needs_a_session_even_on_a_public_path() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let answer = raw_exchange(
        &gw,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test]
async fn cross_site_websocket_is_refused() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let answer = raw_exchange(
        &gw,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: https://evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_pages_and_the_gateway_keeps_serving() {
    let upstream = Upstream::spawn().await;
    let closed = support::closed_port();
    let config = format!(
        "{}[[route]]\nname = \"down\"\npath_prefix = \"/down\"\nupstream = \"http://{closed}\"\n{PUBLIC}\n",
        route_table(&upstream.url(), PUBLIC)
    );
    let gw = TestGateway::start("upstream_timeout = \"500ms\"", &config).await;
    let client = gw.client(Proto::H1);

    let (resp, body) = send(&client, Request::get(gw.url("/down/x")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let page = String::from_utf8_lossy(&body);
    assert!(!page.contains(&closed.to_string()) && !page.contains("onnection refused"), "{page}");

    // HTTP/1.1 bounds the wait when the connection polls it, HTTP/2 with a timer.
    for client in [&client, &gw.client(Proto::H2)] {
        let (resp, body) = send(client, Request::get(gw.url("/stall")).body(empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(String::from_utf8_lossy(&body).contains("too long"));
    }

    let (resp, _) = send(&client, Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_header_block_is_431_and_the_gateway_keeps_serving() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let big = "a".repeat(20 * 1024);
    let answer = raw_exchange(&gw, &format!("GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let req = Request::get(gw.url("/echo")).header("x-big", big).body(empty()).unwrap();
    let h2 = gw.client(Proto::H2).request(req).await;
    assert!(h2.map(|r| r.status() != StatusCode::OK).unwrap_or(true), "HTTP/2 must refuse it too");

    let (resp, _) = send(&gw.client(Proto::H1), Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Read one answer (head and `content-length` body) from a kept-alive stream.
async fn read_answer(tls: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        got.push(tls.read_u8().await.expect("an answer, not a closed stream"));
    }
    let head = String::from_utf8(got).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.parse().unwrap()))
        .expect("content-length");
    let mut body = vec![0; length];
    tls.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_parked_then_serves_its_next_request() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let mut tls = raw_tls(gw.addr, &gw.cert()).await;
    for round in 0..2 {
        tls.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let answer = read_answer(&mut tls).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "round {round}: {answer}");
        // Quiet for a moment: keypin parks the connection, holding no HTTP buffers.
        let mut parked = 0.0;
        for _ in 0..100 {
            parked = gw.metrics().await["keypin_parked_connections"];
            if parked == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(parked, 1.0, "round {round}: the idle connection was not parked");
        assert_eq!(gw.metrics().await["keypin_open_connections"], 1.0);
    }
}

#[tokio::test]
async fn a_client_without_alpn_is_served_http1() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls_config(&gw.cert(), &[])));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(server, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    for _ in 0..2 {
        tls.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let answer = read_answer(&mut tls).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[tokio::test]
async fn a_stalled_client_is_cut_off_while_others_are_served() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "header_read_timeout = \"1s\"").await;
    let mut slow = raw_tls(gw.addr, &gw.cert()).await;
    slow.write_all(b"GET /echo HT").await.unwrap();
    let started = std::time::Instant::now();

    let client = gw.client(Proto::H1);
    for _ in 0..3 {
        let (resp, _) = send(&client, Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the stalled connection is closed by the gateway");
    let answer = String::from_utf8_lossy(&raw);
    assert!(raw.is_empty() || answer.starts_with("HTTP/1.1 408"), "unexpected answer: {answer}");
    assert!(started.elapsed() >= Duration::from_millis(900), "cut off before the timeout");
}

#[tokio::test]
async fn encoded_separators_and_dot_segments_are_refused() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    for path in ["/public/..%2Fadmin", "/a/%2e%2e/b", "/a%5Cb", "/a%00"] {
        let answer =
            raw_exchange(&gw, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
}

#[tokio::test]
async fn in_flight_requests_finish_on_shutdown() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let client = gw.client(Proto::H2);
    let req = Request::get(gw.url("/slow/700")).body(empty()).unwrap();
    let slow = tokio::spawn(async move { send(&client, req).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = gw.addr;
    gw.shutdown().await;
    let (resp, body) = slow.await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&body[..], b"slow done");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn admin_listener_answers_health() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let (status, body) = gw.admin_get("/healthz").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_https_upstream_with_a_private_ca_is_trusted_only_through_its_routes_ca_cert() {
    let (upstream, ca) = Upstream::spawn_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("app-ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    let trusted = format!("ca_cert = \"{}\"\n{PUBLIC}", ca_path.display());
    let gw = TestGateway::start("", &route_table(&upstream.https_url(), &trusted)).await;
    let (resp, body) = send(&gw.client(Proto::H1), Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // Without it, the web PKI roots alone do not trust the app's certificate.
    let gw = TestGateway::start("", &route_table(&upstream.https_url(), PUBLIC)).await;
    let (resp, _) = send(&gw.client(Proto::H1), Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_400_saying_to_use_https() {
    let upstream = Upstream::spawn().await;
    let gw = gateway_to(&upstream, "").await;
    let exchange = plain_exchange(gw.addr, "GET", "/", &[("Host", "localhost")]);
    let (_, head, body) = tokio::time::timeout(Duration::from_secs(5), exchange).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert!(body.ends_with("use an https:// URL.\r\n"), "{body}");
    // TLS on the same port is unaffected.
    let (resp, _) = send(&gw.client(Proto::H1), Request::get(gw.url("/echo")).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
}
