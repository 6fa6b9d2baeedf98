//! The in-process request path before the upstream call: path normalization, route
//! selection and request header rewriting (hop-by-hop removal, identity stripping,
//! forwarding headers, identity injection) on a typical browser request.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use keypin::config::{Inject, RouteConfig};
use keypin::proxy::{Forwarding, Identity, rewrite_request_headers};
use keypin::route::{Router, normalize_path};

fn route(name: &str, host: Option<&str>, prefix: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        host: host.map(Into::into),
        path_prefix: prefix.into(),
        upstream: "http://127.0.0.1:8080".parse().unwrap(),
        inject: Inject::Both,
        user_header: HeaderName::from_static("x-forwarded-user"),
        public_paths: vec!["/favicon.ico".into()],
        preserve_host: true,
    }
}

/// Headers a browser sends on a page load, plus a forged identity header.
fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cookie", "__Host-keypin=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789; theme=dark"),
        ("connection", "keep-alive"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("x-forwarded-user", "forged"),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn request_path(c: &mut Criterion) {
    let router = Router::new(vec![
        route("api", Some("api.example.com"), "/"),
        route("admin", None, "/admin"),
        route("app", None, "/"),
    ]);
    let app = route("app", None, "/");
    let fwd = Forwarding {
        peer: "192.0.2.10".parse().unwrap(),
        trusted_peer: false,
        host: Some(HeaderValue::from_static("app.example.com")),
    };
    let id = Identity {
        authorization: Some(HeaderValue::from_static("Basic dXNlcjE6cEBzc3cwcmQx")),
        user: Some(HeaderValue::from_static("user1")),
    };
    let headers = browser_headers();

    c.bench_function("normalize_path", |b| b.iter(|| normalize_path(black_box("/app/reports/2026/q3.html"))));
    c.bench_function("route_select", |b| {
        b.iter(|| router.select(black_box(Some("app.example.com")), black_box("/app/reports/2026/q3.html")))
    });
    c.bench_function("rewrite_request_headers", |b| {
        b.iter_batched(
            || headers.clone(),
            |mut h| {
                rewrite_request_headers(&mut h, &app, &fwd, Some(&id));
                h
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, request_path);
criterion_main!(benches);
