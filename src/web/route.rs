//! Route selection: the table that picks a `[[route]]` by host and normalized path
//! prefix, the host and authority a request names, and the same-origin check.

use std::borrow::Cow;

use crate::config::RouteConfig;

/// The original host and scheme, as a proxy in front forwards them (believed only
/// from trusted proxies; see `web::proxy` and `web::forward_auth`).
pub const X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");

/// URL prefix keypin keeps for itself on every host.
pub const RESERVED_PREFIX: &str = "/.keypin/";
/// keypin's sign-in and sign-out pages.
pub const LOGIN_PATH: &str = "/.keypin/login";
pub const LOGOUT_PATH: &str = "/.keypin/logout";
/// Forward-auth: an ingress asks whether a request may pass.
pub const AUTH_PATH: &str = "/.keypin/auth";

/// A request's `Host` (or HTTP/2 authority) that [`checked_authority`] accepted:
/// forwarded as written, routed by its host.
#[derive(Debug, Clone)]
pub struct RequestAuthority {
    value: http::HeaderValue,
    host: HostOf,
}

#[derive(Debug, Clone)]
enum HostOf {
    /// The first bytes of the value: a plain `name[:port]`, already lower-case.
    Prefix(usize),
    /// Lower-cased, without brackets, from parsing the value.
    Parsed(String),
}

impl RequestAuthority {
    /// `host[:port]` as the client wrote it.
    pub fn value(&self) -> &http::HeaderValue {
        &self.value
    }

    pub fn into_value(self) -> http::HeaderValue {
        self.value
    }

    /// The host, lower-cased, without port or brackets.
    pub fn host(&self) -> &str {
        match &self.host {
            // The value was text when it was checked.
            HostOf::Prefix(len) => self.value.to_str().map_or("", |v| &v[..*len]),
            HostOf::Parsed(host) => host,
        }
    }
}

/// The authority a request names, if it names it once and well (RFC 9112 §3.2,
/// RFC 9113 §8.3.1): one `Host` header (optional before HTTP/1.1 and with an
/// HTTP/2 authority, which it must then equal), a valid `host[:port]` with no user
/// info. `Err` otherwise: `Host: FORGED@app.test` would be routed to `app.test`
/// and forwarded as written. `None` for an HTTP/1.0 request that names none.
pub fn checked_authority(
    headers: &http::HeaderMap,
    uri: &http::Uri,
    version: http::Version,
) -> Result<Option<RequestAuthority>, InvalidHost> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let (host, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(InvalidHost);
    }
    let authority = uri.authority().map(http::uri::Authority::as_str);
    let (named, value) = match (host, authority) {
        (Some(value), authority) => {
            let named = value.to_str().map_err(|_| InvalidHost)?;
            if authority.is_some_and(|authority| !named.eq_ignore_ascii_case(authority)) {
                return Err(InvalidHost);
            }
            (named, value.clone())
        }
        (None, Some(authority)) => (authority, http::HeaderValue::from_str(authority).map_err(|_| InvalidHost)?),
        (None, None) if version < http::Version::HTTP_11 => return Ok(None),
        (None, None) => return Err(InvalidHost),
    };
    let host = match plain_authority(named) {
        Some(name) => HostOf::Prefix(name.len()),
        None => HostOf::Parsed(parsed_host(named).ok_or(InvalidHost)?),
    };
    Ok(Some(RequestAuthority { value, host }))
}

/// A request names its host twice, or badly (see [`checked_authority`]).
#[derive(Debug)]
pub struct InvalidHost;

/// The host of `named` (lower-cased, without brackets), if it is a valid
/// `host[:port]` with no user info, by parsing it.
fn parsed_host(named: &str) -> Option<String> {
    let authority = named.parse::<http::uri::Authority>().ok()?;
    let host = authority.host();
    // What follows the host: nothing, or `:` and a port number.
    let port = named.get(host.len()..).filter(|_| named.starts_with(host));
    let valid = !named.contains('@')
        && !host.is_empty()
        && port.is_some_and(|p| p.is_empty() || p.strip_prefix(':').is_some_and(|n| n.parse::<u16>().is_ok()));
    valid.then(|| bare_host(&authority))
}

/// An authority's host as routes name it: lower-cased, without brackets.
fn bare_host(authority: &http::uri::Authority) -> String {
    authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// The host a request names (lower-cased, without port), from `Host` or the
/// HTTP/2 authority.
pub fn request_host_of(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    request_authority_value(headers, uri).as_ref().and_then(host_name).map(Cow::into_owned)
}

/// The host (lower-cased, without port) of the authority a request names, as
/// [`request_authority_value`] gives it.
fn host_name(authority: &http::HeaderValue) -> Option<Cow<'_, str>> {
    let raw = authority.to_str().ok()?;
    if let Some(name) = plain_authority(raw) {
        return Some(Cow::Borrowed(name));
    }
    let authority: http::uri::Authority = raw.parse().ok()?;
    Some(Cow::Owned(bare_host(&authority)))
}

/// The name of an authority written the usual way, `name[:port]` with a name of
/// lower-case letters, digits, dots and hyphens and a port that is a number up to
/// 65535: its own answer, without parsing (and copying) it as an authority.
/// `None` for anything else, which callers parse.
fn plain_authority(raw: &str) -> Option<&str> {
    // One pass to the first byte a plain name cannot hold: none, or the port's `:`.
    let end = raw.bytes().position(|b| !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-')).unwrap_or(raw.len());
    let (name, rest) = raw.split_at(end);
    let port_ok = match rest.as_bytes() {
        [] => true,
        // Up to 65535: digits of equal length compare as their numbers do.
        [b':', port @ ..] => {
            (1..=5).contains(&port.len())
                && port.iter().all(u8::is_ascii_digit)
                && (port.len() < 5 || port <= &b"65535"[..])
        }
        _ => false,
    };
    (!name.is_empty() && port_ok).then_some(name)
}

/// Behind a trusted ingress that sends the browser's host in `X-Forwarded-Host`
/// (one value, a host with an optional port), that host is the request's: routing,
/// origin checks and the upstream's `Host` then see what the browser sent. The
/// caller has checked that the peer is trusted; anything else is left as it is.
pub fn adopt_forwarded_host(headers: &mut http::HeaderMap) {
    let mut values = headers.get_all(X_FORWARDED_HOST).iter();
    let (Some(forwarded), None) = (values.next(), values.next()) else {
        return;
    };
    let usable = forwarded.to_str().is_ok_and(|host| {
        !host.contains([',', '@']) && host.parse::<http::uri::Authority>().is_ok_and(|a| !a.host().is_empty())
    });
    if usable {
        let host = forwarded.clone();
        headers.insert(http::header::HOST, host);
    }
}

/// The authority (`host[:port]`) a request was sent to, from `Host` or the HTTP/2
/// authority.
pub fn request_authority<'a>(headers: &'a http::HeaderMap, uri: &'a http::Uri) -> Option<&'a str> {
    match headers.get(http::header::HOST) {
        Some(host) => host.to_str().ok(),
        None => uri.authority().map(http::uri::Authority::as_str),
    }
}

/// [`request_authority`] as a header value: the `Host` header's own (shared, not
/// copied) when it is one.
fn request_authority_value(headers: &http::HeaderMap, uri: &http::Uri) -> Option<http::HeaderValue> {
    match headers.get(http::header::HOST) {
        Some(host) => host.to_str().is_ok().then(|| host.clone()),
        None => uri.authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()),
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
    /// The routes' own PIN namespaces (`secret_prefix`), each once.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        let mut seen: Vec<&str> = Vec::new();
        self.routes.iter().filter_map(|r| r.secret_prefix.as_deref()).filter(move |p| {
            let new = !seen.contains(p);
            seen.push(p);
            new
        })
    }

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
            upstream: Some("http://127.0.0.1:1".parse::<UpstreamUrl>().unwrap()),
            upstream_roots: vec![],
            secret_prefix: None,
            inject: Inject::Basic,
            user_header: http::HeaderName::from_static("x-forwarded-user"),
            public_paths: public.iter().map(|s| (*s).to_owned()).collect(),
            preserve_host: true,
        }
    }

    #[test]
    fn a_forwarded_host_is_adopted_only_when_it_is_one_usable_host() {
        let adopted = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::HOST, "keypin:8081".parse().unwrap());
            for v in values {
                h.append(X_FORWARDED_HOST, v.parse().unwrap());
            }
            adopt_forwarded_host(&mut h);
            h[http::header::HOST].to_str().unwrap().to_owned()
        };
        assert_eq!(adopted(&["app.test:8443"]), "app.test:8443");
        for kept in [&[][..], &["a.test, b.test"], &["user@app.test"], &["a.test", "b.test"], &[""], &["/x"]] {
            assert_eq!(adopted(kept), "keypin:8081", "{kept:?}");
        }
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
    fn a_host_is_named_once_and_well() {
        let check = |uri: &str, version: http::Version, hosts: &[&str]| {
            let mut b = http::Request::builder().uri(uri).version(version);
            for h in hosts {
                b = b.header("host", *h);
            }
            let req = b.body(()).unwrap();
            checked_authority(req.headers(), req.uri(), req.version())
                .map(|named| named.map(|a| (a.value().to_str().unwrap().to_owned(), a.host().to_owned())))
        };
        let named = |value: &str, host: &str| Some((value.to_owned(), host.to_owned()));
        use http::Version as V;
        assert_eq!(check("/", V::HTTP_11, &["app.test"]).unwrap(), named("app.test", "app.test"));
        assert_eq!(check("/", V::HTTP_11, &["app.test:8443"]).unwrap(), named("app.test:8443", "app.test"));
        assert_eq!(check("/", V::HTTP_11, &["App.Test:8443"]).unwrap(), named("App.Test:8443", "app.test"));
        assert_eq!(check("/", V::HTTP_11, &["[::1]:8443"]).unwrap(), named("[::1]:8443", "::1"));
        assert_eq!(check("https://app.test/", V::HTTP_2, &[]).unwrap(), named("app.test", "app.test"));
        assert_eq!(check("https://app.test/", V::HTTP_2, &["APP.test"]).unwrap(), named("APP.test", "app.test"));
        assert_eq!(check("/", V::HTTP_10, &[]).unwrap(), None, "HTTP/1.0 may omit it");
        for (uri, version, hosts) in [
            ("/", V::HTTP_11, &["FORGED@app.test"][..]),
            ("/", V::HTTP_11, &[][..]),
            ("/", V::HTTP_11, &["app.test", "app.test"][..]),
            ("/", V::HTTP_11, &["app.test", "other.test"][..]),
            ("/", V::HTTP_11, &[""][..]),
            ("/", V::HTTP_11, &["app.test:port"][..]),
            ("/", V::HTTP_11, &["app test"][..]),
            ("https://FORGED@app.test/", V::HTTP_2, &[][..]),
            ("https://app.test/", V::HTTP_2, &["other.test"][..]),
        ] {
            assert!(check(uri, version, hosts).is_err(), "{uri} {version:?} {hosts:?}");
        }
    }

    proptest::proptest! {
        /// The fast path answers as parsing the authority does, for any `Host`.
        #[test]
        fn the_host_is_what_parsing_the_authority_gives(raw in "[a-zA-Z0-9.:@\\[\\]_-]{0,24}|\\PC{0,24}") {
            let Ok(value) = http::HeaderValue::from_str(&raw) else { return Ok(()) };
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::HOST, value);
            let parsed = raw.parse::<http::uri::Authority>().ok().map(|a| {
                a.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
            });
            proptest::prop_assert_eq!(request_host_of(&headers, &http::Uri::default()), parsed);
        }

        /// What the fast path takes as a valid host, parsing takes too, as the
        /// same host.
        #[test]
        fn a_plain_authority_parses_as_host_and_port(raw in "[a-z0-9.:-]{0,24}|[a-zA-Z0-9.:@\\[\\]_-]{0,24}") {
            if let Some(name) = plain_authority(&raw) {
                let parsed = parsed_host(&raw);
                proptest::prop_assert_eq!(parsed.as_deref(), Some(name), "{}", raw);
            }
        }

        /// Any `Host` value: checked without a panic, and a host accepted is the
        /// one parsing the authority gives.
        #[test]
        fn a_checked_host_is_what_parsing_the_authority_gives(raw in "[a-zA-Z0-9.:@\\[\\]_-]{0,24}|\\PC{0,24}") {
            let Ok(value) = http::HeaderValue::from_str(&raw) else { return Ok(()) };
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::HOST, value);
            if let Ok(Some(named)) = checked_authority(&headers, &http::Uri::default(), http::Version::HTTP_11) {
                proptest::prop_assert_eq!(Some(named.host().to_owned()), request_host_of(&headers, &http::Uri::default()));
                proptest::prop_assert_eq!(named.value().as_bytes(), raw.as_bytes());
            }
        }

        /// A port of up to five digits is taken when a `u16` holds its number
        /// (longer ones, leading zeros and all, are left to parsing).
        #[test]
        fn a_plain_port_is_one_a_u16_holds(port in "[0-9]{0,5}|6[0-9]{4}") {
            let raw = format!("app.test:{port}");
            proptest::prop_assert_eq!(plain_authority(&raw).is_some(), port.parse::<u16>().is_ok(), "{}", raw);
        }
    }

    #[test]
    fn host_comes_from_host_header_or_authority() {
        let req = http::Request::builder().uri("/").header("host", "App.Example.com:8443").body(()).unwrap();
        assert_eq!(request_host_of(req.headers(), req.uri()).as_deref(), Some("app.example.com"));
        let req = http::Request::builder().uri("https://[::1]:8443/").body(()).unwrap();
        assert_eq!(request_host_of(req.headers(), req.uri()).as_deref(), Some("::1"));
        assert_eq!(request_authority_value(req.headers(), req.uri()).unwrap(), "[::1]:8443");
        let req = http::Request::builder().uri("/").header("host", "App.Example.com:8443").body(()).unwrap();
        assert_eq!(request_authority_value(req.headers(), req.uri()).unwrap(), "App.Example.com:8443");
        let opaque = http::HeaderValue::from_bytes(b"caf\xe9.example").unwrap();
        let req = http::Request::builder().uri("https://app.test/").header("host", opaque).body(()).unwrap();
        assert_eq!(request_authority_value(req.headers(), req.uri()), None, "as request_authority: no fallback");
        assert_eq!(request_authority(req.headers(), req.uri()), None);
    }
}
