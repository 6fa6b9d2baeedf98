//! Forward-auth (`/.keypin/auth`): an ingress in front of the apps (nginx
//! `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`) asks whether the
//! request it holds may pass, and proxies it itself. Here: reading the original
//! request from the ingress's headers (believed only from trusted proxies), and
//! the answers: `200` with the identity headers to add, or `401`/`302` toward the
//! login page on the app's own host.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Response, StatusCode};

use crate::web::body::{Body, full_body};
use crate::web::error::GatewayError;
use crate::web::proxy::Identity;
use crate::web::redirect::{login_url, safe_redirect};
use crate::web::route::{X_FORWARDED_HOST, X_FORWARDED_PROTO};

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// ingress-nginx's spelling: the whole URL.
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// The request an ingress holds and asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    /// `https` unless the ingress says `http`.
    pub https: bool,
    pub host: Authority,
    /// Path and query, as the client sent them.
    pub target: PathAndQuery,
    /// Asked by nginx (`X-Original-URI`): it wants `401` with a `Location`.
    pub nginx: bool,
    /// A browser navigation (`GET`/`HEAD` accepting HTML): sent to the login page.
    pub navigating: bool,
}

/// One header's value as text, when there is exactly one.
fn one<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v.to_str().map(|s| Some(s.trim())).map_err(|_| GatewayError::BadForwardAuth),
        (Some(_), Some(_)) => Err(GatewayError::BadForwardAuth),
    }
}

/// The original request, from nginx's `X-Original-URI`/`X-Original-Method`
/// (ingress-nginx: `X-Original-URL`) or Traefik's and Caddy's
/// `X-Forwarded-Method/Proto/Host/Uri`. Believed only from a trusted proxy
/// (`403` otherwise); a missing or malformed target or host is `400`, never a
/// decision on a guessed path.
pub fn original(headers: &HeaderMap, trusted: bool) -> Result<Original, GatewayError> {
    if !trusted {
        return Err(GatewayError::UntrustedForwardAuth);
    }
    let url = match one(headers, &X_ORIGINAL_URL)? {
        Some(url) => Some(url.parse::<http::Uri>().map_err(|_| GatewayError::BadForwardAuth)?),
        None => None,
    };
    let url_target = url.as_ref().and_then(|u| u.path_and_query()).map(PathAndQuery::as_str);
    let nginx_uri = one(headers, &X_ORIGINAL_URI)?.or(url_target);
    let (target, method) = match nginx_uri {
        Some(uri) => (uri, one(headers, &X_ORIGINAL_METHOD)?),
        None => {
            (one(headers, &X_FORWARDED_URI)?.ok_or(GatewayError::BadForwardAuth)?, one(headers, &X_FORWARDED_METHOD)?)
        }
    };
    if !target.starts_with('/') {
        return Err(GatewayError::BadForwardAuth);
    }
    let target = PathAndQuery::try_from(target).map_err(|_| GatewayError::BadForwardAuth)?;
    let method = match method {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| GatewayError::BadForwardAuth)?,
        None => Method::GET,
    };
    let url_host = url.as_ref().and_then(|u| u.authority()).map(Authority::as_str);
    let host = match one(headers, &X_FORWARDED_HOST)?.or(url_host) {
        Some(host) => host,
        None => one(headers, &header::HOST)?.ok_or(GatewayError::BadForwardAuth)?,
    };
    let host: Authority = host.parse().map_err(|_| GatewayError::BadForwardAuth)?;
    if host.as_str().contains('@') || host.host().is_empty() {
        return Err(GatewayError::BadForwardAuth);
    }
    let https = !matches!(one(headers, &X_FORWARDED_PROTO)?, Some(p) if p.eq_ignore_ascii_case("http"));
    let navigating = matches!(method, Method::GET | Method::HEAD)
        && headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/html"));
    Ok(Original { method, https, host, target, nginx: nginx_uri.is_some(), navigating })
}

/// `200`: the request may pass, with these headers added (the route's identity
/// and its user header, when it has one; `Set-Cookie` when the session cookie was
/// re-issued).
pub fn allowed(identity: Option<(&Identity, &HeaderName)>, refresh: Option<HeaderValue>) -> Response<Body> {
    let mut resp = Response::new(full_body(bytes::Bytes::new()));
    let headers = resp.headers_mut();
    if let Some((identity, user_header)) = identity {
        if let Some(authorization) = &identity.authorization {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        if let Some(user) = &identity.user {
            headers.insert(user_header.clone(), user.clone());
        }
    }
    if let Some(cookie) = refresh {
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    resp
}

/// No valid session: toward the login page on the app's own host, which returns
/// to the original target. nginx gets `401` with the `Location` (its
/// `error_page 401` turns it into a redirect); for the others a browser
/// navigation gets `302`, anything else `401`.
pub fn sign_in_first(original: &Original) -> Response<Body> {
    let scheme = if original.https { "https" } else { "http" };
    let location = format!("{scheme}://{}{}", original.host, login_url(&safe_redirect(original.target.as_str())));
    let redirect = !original.nginx && original.navigating;
    let mut resp = Response::new(full_body(bytes::Bytes::new()));
    *resp.status_mut() = if redirect { StatusCode::FOUND } else { StatusCode::UNAUTHORIZED };
    if let Ok(location) = HeaderValue::try_from(location) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, NO_STORE);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn traefik_caddy_and_nginx_spell_the_original_request_differently() {
        let traefik = headers(&[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.test"),
            ("x-forwarded-uri", "/reports?y=2024"),
            ("host", "keypin:8080"),
        ]);
        let o = original(&traefik, true).unwrap();
        assert_eq!(
            (o.method, o.host.as_str(), o.target.as_str(), o.nginx),
            (Method::POST, "app.test", "/reports?y=2024", false)
        );
        let nginx = headers(&[("x-original-uri", "/a/b?c=d"), ("host", "app.test"), ("accept", "text/html")]);
        let o = original(&nginx, true).unwrap();
        assert!(o.nginx && o.navigating && o.https);
        assert_eq!((o.host.as_str(), o.target.as_str()), ("app.test", "/a/b?c=d"));
        let ingress_nginx = headers(&[("x-original-url", "https://hr.test/p?q=1"), ("host", "keypin.svc")]);
        let o = original(&ingress_nginx, true).unwrap();
        assert_eq!((o.host.as_str(), o.target.as_str(), o.nginx), ("hr.test", "/p?q=1", true));
    }

    #[test]
    fn nothing_is_believed_from_an_untrusted_peer_and_nothing_is_guessed() {
        let good = headers(&[("x-forwarded-uri", "/"), ("x-forwarded-host", "app.test")]);
        assert!(matches!(original(&good, false), Err(GatewayError::UntrustedForwardAuth)));
        for bad in [
            headers(&[("x-forwarded-host", "app.test")]),
            headers(&[("x-forwarded-uri", "reports"), ("x-forwarded-host", "app.test")]),
            headers(&[("x-forwarded-uri", "http://evil.test/"), ("x-forwarded-host", "app.test")]),
            headers(&[("x-forwarded-uri", "/"), ("x-forwarded-host", "user@app.test")]),
            headers(&[("x-forwarded-uri", "/"), ("x-forwarded-uri", "/admin"), ("x-forwarded-host", "app.test")]),
            headers(&[("x-forwarded-uri", "/")]),
            headers(&[("x-original-uri", "/"), ("x-original-method", "G E T"), ("host", "app.test")]),
        ] {
            assert!(matches!(original(&bad, true), Err(GatewayError::BadForwardAuth)), "{bad:?}");
        }
    }

    #[test]
    fn without_a_session_nginx_gets_401_with_the_login_url_and_browsers_elsewhere_302() {
        let nginx = original(&headers(&[("x-original-uri", "/r?x=1"), ("host", "app.test")]), true).unwrap();
        let resp = sign_in_first(&nginx);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[header::LOCATION], "https://app.test/.keypin/login?rd=%2Fr%3Fx%3D1");
        let browser = headers(&[("x-forwarded-uri", "/r"), ("x-forwarded-host", "app.test"), ("accept", "text/html")]);
        assert_eq!(sign_in_first(&original(&browser, true).unwrap()).status(), StatusCode::FOUND);
        let api =
            headers(&[("x-forwarded-uri", "/api"), ("x-forwarded-host", "app.test"), ("accept", "application/json")]);
        assert_eq!(sign_in_first(&original(&api, true).unwrap()).status(), StatusCode::UNAUTHORIZED);
        let evil = headers(&[("x-forwarded-uri", "//evil.test/x"), ("x-forwarded-host", "app.test")]);
        let resp = sign_in_first(&original(&evil, true).unwrap());
        assert_eq!(resp.headers()[header::LOCATION], "https://app.test/.keypin/login?rd=%2F", "rd stays local");
    }
}
