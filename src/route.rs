//! Route selection: the normalized request path (one canonical spelling, or a refusal)
//! and the table that picks a `[[route]]` by host and path prefix.

use std::borrow::Cow;

use crate::config::RouteConfig;
use crate::error::GatewayError;

/// URL prefix keypin keeps for itself on every host.
pub const RESERVED_PREFIX: &str = "/.keypin/";

/// The request path in its one canonical spelling: percent-encoded unreserved
/// characters (`%41` for `A`, `%2E` for `.`) are decoded, every other escape is kept
/// as written with upper-case hex. A path that could be read two ways by the
/// upstream — encoded `/`, `\` or NUL, raw `\` or control bytes, `.` or `..` segments —
/// is refused rather than guessed at, so `/public/..%2Fadmin` cannot reach a public
/// prefix.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, GatewayError> {
    if !raw.starts_with('/') {
        return Err(GatewayError::BadPath("not an absolute path"));
    }
    let bytes = raw.as_bytes();
    let mut out: Option<String> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let value = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(GatewayError::BadPath("broken percent-escape"))?;
            if matches!(value, b'/' | b'\\') || value.is_ascii_control() {
                return Err(GatewayError::BadPath("encoded separator or control byte"));
            }
            let buf = out.get_or_insert_with(|| raw[..i].to_owned());
            if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                buf.push(char::from(value));
            } else {
                buf.push('%');
                buf.push_str(&raw[i + 1..i + 3].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        if b == b'\\' || b.is_ascii_control() || b == b' ' {
            return Err(GatewayError::BadPath("backslash, space or control byte"));
        }
        if let Some(buf) = out.as_mut() {
            buf.push(char::from(b));
        }
        i += 1;
    }
    let path = out.map_or(Cow::Borrowed(raw), Cow::Owned);
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(GatewayError::BadPath("dot-segment"));
    }
    Ok(path)
}

/// The host a request names (lower-cased, without port), from `Host` or the
/// HTTP/2 authority.
pub fn request_host_of(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    let raw = request_authority(headers, uri)?;
    let authority: http::uri::Authority = raw.parse().ok()?;
    Some(authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase())
}

/// The authority (`host[:port]`) a request was sent to, from `Host` or the HTTP/2
/// authority.
pub fn request_authority<'a>(headers: &'a http::HeaderMap, uri: &'a http::Uri) -> Option<&'a str> {
    match headers.get(http::header::HOST) {
        Some(host) => host.to_str().ok(),
        None => uri.authority().map(http::uri::Authority::as_str),
    }
}

/// A browser's `Origin`, when present, must name the site it is talking to: a
/// cross-site page must not post a login or open a WebSocket with the user's
/// cookies. An absent `Origin` passes (non-browser clients, older browsers); the
/// CSRF token covers those.
pub fn same_origin(headers: &http::HeaderMap, uri: &http::Uri) -> bool {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    let Some(authority) = request_authority(headers, uri) else {
        return false;
    };
    origin.to_str().ok().and_then(|o| o.strip_prefix("https://")).is_some_and(|o| o.eq_ignore_ascii_case(authority))
}

/// Whether `path` is `prefix` or lies below it, segment-wise: `/app` covers `/app`
/// and `/app/x` but not `/apple`.
fn under_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The routes, most specific first: a named host before any host, then the
/// longest path prefix.
#[derive(Debug)]
pub struct Router {
    routes: Vec<RouteConfig>,
}

impl Router {
    pub fn new(mut routes: Vec<RouteConfig>) -> Self {
        routes.sort_by_key(|r| (r.host.is_none(), std::cmp::Reverse(r.path_prefix.len())));
        Self { routes }
    }

    /// The route for a normalized path on a host, if any.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<&RouteConfig> {
        self.routes
            .iter()
            .find(|r| r.host.as_deref().is_none_or(|h| Some(h) == host) && under_prefix(path, &r.path_prefix))
    }
}

/// Whether a normalized path is served without login on this route.
pub fn is_public(route: &RouteConfig, path: &str) -> bool {
    route.public_paths.iter().any(|p| if p.ends_with('/') { path.starts_with(p.as_str()) } else { path == p })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Inject, UpstreamUrl};

    fn route(name: &str, host: Option<&str>, prefix: &str, public: &[&str]) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            host: host.map(Into::into),
            path_prefix: prefix.into(),
            upstream: "http://127.0.0.1:1".parse::<UpstreamUrl>().unwrap(),
            inject: Inject::Basic,
            user_header: http::HeaderName::from_static("x-forwarded-user"),
            public_paths: public.iter().map(|s| (*s).to_owned()).collect(),
            preserve_host: true,
        }
    }

    #[test]
    fn normalization_decodes_unreserved_and_refuses_ambiguity() {
        assert_eq!(normalize_path("/a/b").unwrap(), "/a/b");
        assert!(matches!(normalize_path("/plain/path").unwrap(), Cow::Borrowed(_)));
        assert_eq!(normalize_path("/%70ublic/x").unwrap(), "/public/x");
        assert_eq!(normalize_path("/a%20b%3f").unwrap(), "/a%20b%3F");
        for bad in [
            "/public/..%2Fadmin",
            "/public/%2e%2e/admin",
            "/public/%2E/admin",
            "/a/../b",
            "/a/./b",
            "/a/..",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a%0ab",
            "/a%zz",
            "/a%2",
            "*",
            "relative",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad} should be refused");
        }
        // Dots inside names are fine.
        assert_eq!(normalize_path("/a/.well-known/x..y").unwrap(), "/a/.well-known/x..y");
    }

    #[test]
    fn most_specific_route_wins() {
        let router = Router::new(vec![
            route("any", None, "/", &[]),
            route("api", None, "/api", &[]),
            route("host", Some("app.example.com"), "/", &[]),
        ]);
        assert_eq!(router.select(Some("other"), "/x").unwrap().name, "any");
        assert_eq!(router.select(Some("other"), "/api/v1").unwrap().name, "api");
        assert_eq!(router.select(Some("other"), "/apiary").unwrap().name, "any");
        assert_eq!(router.select(Some("app.example.com"), "/api").unwrap().name, "host");
        let only_host = Router::new(vec![route("h", Some("a.example"), "/", &[])]);
        assert!(only_host.select(Some("b.example"), "/").is_none());
        assert!(only_host.select(None, "/").is_none());
    }

    #[test]
    fn public_paths_are_exact_or_folder_prefixes() {
        let r = route("r", None, "/", &["/favicon.ico", "/static/"]);
        assert!(is_public(&r, "/favicon.ico"));
        assert!(!is_public(&r, "/favicon.ico.bak"));
        assert!(is_public(&r, "/static/app.css"));
        assert!(!is_public(&r, "/static"));
        assert!(!is_public(&r, "/staticx/a"));
        // An encoded escape out of a public folder never gets this far.
        assert!(normalize_path("/static/..%2Fadmin").is_err());
    }

    #[test]
    fn origin_must_match_the_authority() {
        let check = |origin: Option<&str>| {
            let mut b = http::Request::builder().uri("/ws").header("host", "app.example.com:8443");
            if let Some(o) = origin {
                b = b.header("origin", o);
            }
            let req = b.body(()).unwrap();
            same_origin(req.headers(), req.uri())
        };
        assert!(check(None));
        assert!(check(Some("https://App.Example.com:8443")));
        assert!(!check(Some("https://evil.example")));
        assert!(!check(Some("https://app.example.com")));
        assert!(!check(Some("http://app.example.com:8443")));
        assert!(!check(Some("null")));
        let h2 = http::Request::builder()
            .uri("https://app.example.com/")
            .header("origin", "https://app.example.com")
            .body(())
            .unwrap();
        assert!(same_origin(h2.headers(), h2.uri()));
    }

    #[test]
    fn host_comes_from_host_header_or_authority() {
        let req = http::Request::builder().uri("/").header("host", "App.Example.com:8443").body(()).unwrap();
        assert_eq!(request_host_of(req.headers(), req.uri()).as_deref(), Some("app.example.com"));
        let req = http::Request::builder().uri("https://[::1]:8443/").body(()).unwrap();
        assert_eq!(request_host_of(req.headers(), req.uri()).as_deref(), Some("::1"));
    }
}
