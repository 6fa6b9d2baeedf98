//! The in-process request path before the upstream call, on a typical browser
//! request: path normalization, route selection, request header rewriting
//! (hop-by-hop removal, identity stripping, forwarding headers, identity
//! injection), and the whole authenticated path (`authenticated_request_path`).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use keypin::config::{Inject, RouteConfig};
use keypin::web::path::normalize_path;
use keypin::web::proxy::{Forwarding, Identity, rewrite_request_headers, upgrade_protocol};
use keypin::web::route::{Router, checked_authority};

fn route(name: &str, host: Option<&str>, prefix: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        host: host.map(Into::into),
        path_prefix: prefix.into(),
        upstream: Some("http://127.0.0.1:8080".parse().unwrap()),
        upstream_roots: vec![],
        secret_prefix: None,
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

criterion_group!(benches, request_path);

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
                let upgrade = upgrade_protocol(&h);
                rewrite_request_headers(&mut h, &app, std::slice::from_ref(&app.user_header), &fwd, Some(&id), upgrade);
                h
            },
            BatchSize::SmallInput,
        )
    });
}

/// The whole in-process path of an authenticated request up to the upstream call:
/// `Gateway::prepare` (normalize, route, open the session cookie, resolve the
/// cached secret, identity, strip keypin's cookies) plus the header rewrite.
fn authenticated_request(c: &mut Criterion) {
    use std::sync::Arc;

    use keypin::config::Config;
    use keypin::state::secrets::SecretName;
    use keypin::state::secrets::cache::SecretCache;
    use keypin::state::secrets::file::FileStore;
    use keypin::state::session::{Sessions, revocations};
    use keypin::web::gateway::{Gateway, Shared};

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = keypin::config::SessionKey::generate().to_base64().to_string();
    let text = format!(
        "[session]\nkeys = [\"{key}\"]\n[[route]]\nname = \"app\"\nupstream = \"http://127.0.0.1:9\"\ninject = \"both\"\n"
    );
    let config = Config::parse(&text, "bench", &|_| None).unwrap();
    let shared = Shared { metrics: Arc::default(), revoked: revocations() };
    let store = Arc::new(FileStore::embedded(keypin::ops::demo::SECRETS).unwrap());
    let secrets = Arc::new(SecretCache::new(store, &config.secrets, shared.metrics.clone()));
    let limits =
        keypin::state::limits::store_for(&config.limits, shared.metrics.clone(), shared.revoked.clone()).unwrap();
    let gateway = rt.block_on(async { Gateway::new(&config, secrets, limits, &shared) });

    let (_, cookie) =
        Sessions::new(&config.session, revocations()).mint(SecretName::for_pin("secret-", "1234"), "user1");
    let pair = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut headers = browser_headers();
    headers.insert("cookie", HeaderValue::try_from(format!("theme=dark; {pair}")).unwrap());
    let mut req = http::Request::get("/app/reports/2026/q3.html").body(()).unwrap();
    *req.headers_mut() = headers;
    let (parts, ()) = req.into_parts();
    let peer: std::net::IpAddr = "192.0.2.10".parse().unwrap();
    // Warm the secret cache, as a running gateway would be.
    let mut warm = http::Request::from_parts(parts.clone(), ());
    // What the gateway checks before `prepare`: its authority.
    let authority = |req: &http::Request<()>| checked_authority(req.headers(), req.uri(), req.version()).unwrap();
    let checked = authority(&warm);
    assert!(rt.block_on(gateway.prepare(&mut warm, checked, peer, &mut "")).is_ok());

    c.bench_function("authenticated_request_path", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let req = http::Request::from_parts(parts.clone(), ());
                (authority(&req), req)
            },
            |(checked, mut req)| {
                let gateway = &gateway;
                async move {
                    let prepared = gateway.prepare(&mut req, checked, peer, &mut "").await.expect("authenticated");
                    let route = prepared.route;
                    let upgrade = prepared.upgrade.map(|u| u.protocol);
                    rewrite_request_headers(
                        req.headers_mut(),
                        route,
                        std::slice::from_ref(&route.user_header),
                        &prepared.forwarding,
                        prepared.identity.as_ref(),
                        upgrade,
                    );
                    req
                }
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(whole_path, authenticated_request);
criterion_main!(benches, whole_path);
