use super::*;
use crate::config::{Inject, UpstreamUrl};

fn route() -> RouteConfig {
    RouteConfig {
        name: "r".into(),
        host: None,
        path_prefix: "/".into(),
        upstream: Some("http://127.0.0.1:9/base".parse::<UpstreamUrl>().unwrap()),
        upstream_roots: vec![],
        secret_prefix: None,
        inject: Inject::Both,
        user_header: HeaderName::from_static("x-app-user"),
        public_paths: vec![],
        preserve_host: true,
    }
}

fn fwd(trusted: bool) -> Forwarding {
    Forwarding {
        peer: "192.0.2.7".parse().unwrap(),
        trusted_peer: trusted,
        host: Some(HeaderValue::from_static("app.example.com")),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn the_hop_by_hop_index_names_each_hop_by_hop_header_and_no_other() {
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
    }
    for name in [header::HOST, header::COOKIE, HeaderName::from_static("x-keep-alive"), X_FORWARDED_FOR] {
        assert_eq!(hop_by_hop_index(&name), None, "{name}");
    }
}

#[test]
fn hop_by_hop_and_connection_named_headers_go() {
    let mut h = headers(&[
        ("connection", "Keep-Alive, , X-Secret-Hop"),
        ("keep-alive", "timeout=5"),
        ("x-secret-hop", "1"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("proxy-connection", "keep-alive"),
        ("upgrade", "h2c"),
        ("x-kept", "yes"),
    ]);
    let upgrade = upgrade_protocol(&h);
    rewrite_request_headers(&mut h, &route(), &[route().user_header], &fwd(false), None, upgrade);
    for gone in ["connection", "keep-alive", "x-secret-hop", "te", "transfer-encoding", "proxy-connection", "upgrade"] {
        assert!(!h.contains_key(gone), "{gone} should be removed");
    }
    assert_eq!(h["x-kept"], "yes");
}

#[test]
fn every_routes_user_header_and_folded_forwarding_headers_are_stripped() {
    let mut h = headers(&[
        ("x-webauth-user", "admin"),
        ("X_Webauth_User", "admin"),
        ("x_forwarded_for", "10.9.9.9"),
        ("x.real.ip", "10.9.9.9"),
        ("x_forwarded_host", "evil.example"),
        ("transfer_encoding", "chunked"),
        ("content_length", "0"),
        ("x-request-id", "kept"),
    ]);
    let other = HeaderName::from_static("x-webauth-user");
    let upgrade = upgrade_protocol(&h);
    rewrite_request_headers(&mut h, &route(), &[route().user_header, other], &fwd(false), None, upgrade);
    let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    for gone in ["x-webauth-user", "x_webauth_user", "x_forwarded_for", "x.real.ip", "x_forwarded_host"] {
        assert!(!left.contains(&gone), "{gone} should be removed: {left:?}");
    }
    assert!(!left.contains(&"transfer_encoding") && !left.contains(&"content_length"), "{left:?}");
    assert_eq!(h["x-request-id"], "kept");
    assert_eq!(h["x-forwarded-for"], "192.0.2.7", "keypin's own value, alone");
}

#[test]
fn an_address_is_written_as_itself_whichever_came_before() {
    for ip in ["192.0.2.7", "192.0.2.7", "2001:db8::1", "192.0.2.8", "192.0.2.7"] {
        assert_eq!(ip_header_value(ip.parse().unwrap()), ip);
    }
}

#[test]
fn a_user_header_configured_with_underscores_is_stripped_in_every_spelling() {
    let mut h =
        headers(&[("x-app_login", "admin"), ("X.App.Login", "admin"), ("x_app_login", "admin"), ("x-app", "kept")]);
    let configured = RouteConfig { user_header: HeaderName::from_static("x_app_login"), ..route() };
    let proxy = Proxy::new(Duration::from_secs(1), Arc::default(), std::slice::from_ref(&configured));
    rewrite_request_headers(&mut h, &configured, &proxy.user_headers, &fwd(false), None, None);
    let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    assert!(!left.iter().any(|name| name.contains("login")), "{left:?}");
    assert_eq!(h["x-app"], "kept");
}

#[test]
fn identity_headers_are_stripped_in_every_spelling_then_injected() {
    let mut h = headers(&[
        ("authorization", "Basic Zm9yZ2Vk"),
        ("authorization", "Bearer second"),
        ("proxy-authorization", "Basic eA=="),
        ("x-forwarded-user", "admin"),
        ("x_forwarded_user", "admin"),
        ("x.forwarded.user", "admin"),
        ("x-remote-user", "admin"),
        ("remote_user", "admin"),
        ("x-auth-request-user", "admin"),
        ("x-auth-request-email", "admin@example.com"),
        ("x_app_user", "admin"),
        ("x-app-user", "admin"),
        ("x-forwarded-username", "kept: not an identity header"),
    ]);
    let id = Identity {
        authorization: Some(HeaderValue::from_static("Basic dXNlcjE6cA==")),
        user: Some(HeaderValue::from_static("user1")),
    };
    let upgrade = upgrade_protocol(&h);
    rewrite_request_headers(&mut h, &route(), &[route().user_header], &fwd(false), Some(&id), upgrade);
    assert_eq!(h.get_all("authorization").iter().collect::<Vec<_>>(), ["Basic dXNlcjE6cA=="]);
    assert_eq!(h.get_all("x-app-user").iter().collect::<Vec<_>>(), ["user1"]);
    for gone in [
        "proxy-authorization",
        "x-forwarded-user",
        "x_forwarded_user",
        "x.forwarded.user",
        "x-remote-user",
        "remote_user",
        "x-auth-request-user",
        "x-auth-request-email",
        "x_app_user",
    ] {
        assert!(!h.contains_key(gone), "{gone} should be removed");
    }
    assert!(h.contains_key("x-forwarded-username"));
}

#[test]
fn untrusted_peers_cannot_choose_forwarding_headers() {
    let mut h = headers(&[
        ("x-forwarded-for", "10.9.9.9"),
        ("x-forwarded-for", "10.8.8.8"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example"),
        ("x-real-ip", "10.9.9.9"),
        ("forwarded", "for=10.9.9.9"),
    ]);
    let upgrade = upgrade_protocol(&h);
    rewrite_request_headers(&mut h, &route(), &[route().user_header], &fwd(false), None, upgrade);
    assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["192.0.2.7"]);
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "app.example.com");
    assert_eq!(h["x-real-ip"], "192.0.2.7");
    assert!(!h.contains_key("forwarded"));
}

#[test]
fn trusted_proxies_extend_the_chain() {
    let mut h = headers(&[
        ("x-forwarded-for", "203.0.113.1"),
        ("x-forwarded-for", "198.51.100.2"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "public.example"),
        ("forwarded", "for=203.0.113.1"),
    ]);
    let upgrade = upgrade_protocol(&h);
    rewrite_request_headers(&mut h, &route(), &[route().user_header], &fwd(true), None, upgrade);
    assert_eq!(h["x-forwarded-for"], "203.0.113.1, 198.51.100.2, 192.0.2.7");
    assert_eq!(h["x-forwarded-host"], "public.example");
    assert!(h.contains_key("forwarded"));
}

#[test]
fn websocket_upgrades_keep_their_headers() {
    let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")]);
    assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
    let upgrade = upgrade_protocol(&h);
    rewrite_request_headers(&mut h, &route(), &[route().user_header], &fwd(false), None, upgrade);
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["sec-websocket-key"], "k");
}

#[test]
fn upstream_target_joins_base_path_and_query() {
    let up = route().upstream.unwrap();
    let (origin, uri) = upstream_target(&up, None, "/x/y".into(), Some("a=1&b=%2F")).unwrap();
    assert_eq!((origin.scheme.as_str(), origin.authority.as_str()), ("http", "127.0.0.1:9"));
    assert_eq!(uri.to_string(), "/base/x/y?a=1&b=%2F");
    let up: UpstreamUrl = "https://app.internal".parse().unwrap();
    let (origin, uri) = upstream_target(&up, None, "/".into(), None).unwrap();
    assert_eq!(
        (origin.scheme.as_str(), origin.authority.as_str(), uri.to_string().as_str()),
        ("https", "app.internal", "/")
    );
    assert_eq!(up.host, "app.internal", "the Host sent upstream");
}
