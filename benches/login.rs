//! Session and login costs: a PIN to its secret name (plain and HMAC), sealing a session cookie, opening one the first time
//! it is seen (AES-256-GCM + JSON, then remembered) and again (the remembered
//! session, with expiry and revocation checked), a secret-cache hit, and a whole login POST (form parsing, CSRF check,
//! PIN check, cached secret, new sealed session) with `min_response` at zero.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::header::{COOKIE, HeaderMap, HeaderValue, SET_COOKIE};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use keypin::config::SessionKey;
use keypin::config::{LimitsConfig, PinConfig, Rate, SecretBackend, SecretsConfig, SessionConfig};
use keypin::state::limits::MemoryLimitStore;
use keypin::state::secrets::SecretName;
use keypin::state::secrets::cache::{SecretCache, Staleness};
use keypin::state::secrets::file::FileStore;
use keypin::state::session::Sessions;
use keypin::web::login::Login;

fn session_config() -> SessionConfig {
    SessionConfig {
        deployment: String::new(),
        cookie_name: "__Host-keypin".into(),
        keys: vec![SessionKey::generate(), SessionKey::generate()],
        ttl: Duration::from_secs(8 * 3600),
        idle_timeout: Duration::from_secs(1800),
    }
}

fn secrets_config() -> SecretsConfig {
    SecretsConfig {
        backend: SecretBackend::File { path: "embedded".into() },
        cache_ttl: Duration::from_secs(3600),
        negative_cache_ttl: Duration::from_secs(3600),
        stale_if_error: Duration::from_secs(600),
        request_timeout: Duration::from_secs(5),
    }
}

/// The `name=value` part of a `Set-Cookie`.
fn pair(set_cookie: &HeaderValue) -> String {
    set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned()
}

/// A PIN to its secret name: plain (`secret-` + PIN) and `secret_name = "hmac"`
/// (HMAC-SHA256 under `pin_key`, 32 hex characters), once per login.
fn secret_names(c: &mut Criterion) {
    let plain = PinConfig::default();
    let key = keypin::config::PinKey::from_base64(&SessionKey::generate().to_base64()).unwrap();
    let hmac =
        PinConfig { secret_name: keypin::config::SecretNaming::Hmac, pin_key: Some(key), ..PinConfig::default() };
    c.bench_function("secret_name_plain", |b| b.iter(|| SecretName::of(black_box(&plain), black_box("48291357"))));
    c.bench_function("secret_name_hmac", |b| b.iter(|| SecretName::of(black_box(&hmac), black_box("48291357"))));
}

fn sessions(c: &mut Criterion) {
    let sessions = Sessions::new(&session_config(), keypin::state::session::revocations());
    let name = SecretName::for_pin("secret-", "1234");
    c.bench_function("session_seal", |b| b.iter(|| sessions.mint(black_box(name.clone()), "user1")));

    let request = |cookie: &HeaderValue| {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::try_from(format!("theme=dark; {}; lang=en", pair(cookie))).unwrap());
        headers
    };
    c.bench_function("session_open_first", |b| {
        b.iter_batched(
            || request(&sessions.mint(name.clone(), "user1").1),
            |headers| sessions.open(black_box(&headers)).expect("opens"),
            BatchSize::SmallInput,
        )
    });
    let headers = request(&sessions.mint(name, "user1").1);
    c.bench_function("session_open", |b| b.iter(|| sessions.open(black_box(&headers)).expect("opens")));
}

fn login(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = Arc::new(FileStore::embedded(keypin::ops::demo::SECRETS).unwrap());
    let cache = Arc::new(SecretCache::new(store, &secrets_config(), Arc::default()));
    let name = SecretName::for_pin("secret-", "1234");
    rt.block_on(cache.resolve(&name, Staleness::FreshOnly)).unwrap();
    c.bench_function("secret_cache_hit", |b| {
        b.to_async(&rt).iter(|| async { cache.resolve(black_box(&name), Staleness::AllowStale).await.unwrap() })
    });

    let sessions = Arc::new(Sessions::new(&session_config(), keypin::state::session::revocations()));
    let pin = PinConfig { min_response: Duration::ZERO, ..PinConfig::default() };
    // Limits generous enough never to refuse: the bench measures the login itself.
    let limits = LimitsConfig {
        login_per_ip: Rate::per(u32::MAX, Duration::from_secs(1)),
        login_global: Rate::per(u32::MAX, Duration::from_secs(1)),
        ..LimitsConfig::default()
    };
    let login = Login::new(
        pin,
        sessions,
        cache,
        Arc::new(MemoryLimitStore::new(&limits)),
        Arc::default(),
        200,
        Default::default(),
    );
    let client: IpAddr = "192.0.2.1".parse().unwrap();

    // A CSRF token serves one POST: every iteration visits the form first (not
    // timed). The form's answer is ready at once, so no runtime is needed for it.
    let form_visit = || {
        let get = Request::get("/.keypin/login").body(Full::new(Bytes::new())).unwrap();
        let page = login.handle(get, "/.keypin/login", client).now_or_never().unwrap().unwrap();
        let csrf_cookie = pair(page.headers().get(SET_COOKIE).unwrap());
        let html = page.into_body().collect().now_or_never().unwrap().unwrap().to_bytes();
        let html = String::from_utf8_lossy(&html);
        let start = html.find("name=\"csrf\" value=\"").unwrap() + 19;
        let token = &html[start..start + html[start..].find('"').unwrap()];
        (csrf_cookie, Bytes::from(format!("pin=1234&rd=%2Fapp&csrf={token}")))
    };

    c.bench_function("login_post_cached_secret", |b| {
        b.to_async(&rt).iter_batched(
            form_visit,
            |(csrf_cookie, form)| async {
                let req = Request::builder()
                    .method(Method::POST)
                    .uri("/.keypin/login")
                    .header("host", "app.example.com")
                    .header("origin", "https://app.example.com")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header(COOKIE, csrf_cookie)
                    .body(Full::new(form))
                    .unwrap();
                let resp = login.handle(req, "/.keypin/login", client).await.unwrap();
                assert_eq!(resp.status(), 303);
                resp
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, secret_names, sessions, login);
criterion_main!(benches);
