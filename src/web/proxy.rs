//! The upstream side: header rewriting (hop-by-hop, forwarding headers, identity
//! stripping and injection), streaming bodies both ways through the per-worker
//! connection pools, and WebSocket upgrades.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::config::{RouteConfig, UpstreamUrl};
use crate::observe::metrics::Metrics;
use crate::transport::connection::within;
use crate::transport::pool::{Origin, Pool, UpstreamTrust};
use crate::web::body::Body;
use crate::web::error::GatewayError;
use crate::web::route::{X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::web::upgrade::SessionWatch;

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy `Keep-Alive` and
/// `Proxy-Connection`): they describe one connection and must not be forwarded.
/// `Proxy-Authorization` belongs here too, and is an identity header besides.
/// `Upgrade` too: a WebSocket's pair is set again (`rewrite_request_headers`).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Identity headers a client could send to impersonate someone; all are removed
/// before keypin injects its own. Compared after folding `_` and `.` to `-`, because
/// CGI/PHP backends map `X_Forwarded_User` and `X-Forwarded-User` to one variable.
const IDENTITY_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "x-forwarded-user",
    "x-remote-user",
    "remote-user",
    "x-auth-request-user",
    "x-auth-request-email",
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const HTTPS: HeaderValue = HeaderValue::from_static("https");
const UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");

/// Facts about the client connection that the forwarding headers carry.
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// The socket peer (IPv4-mapped addresses already unmapped).
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy whose forwarding headers are kept.
    pub trusted_peer: bool,
    /// The `Host` (or HTTP/2 authority) the client asked for.
    pub host: Option<HeaderValue>,
}

/// A request to switch protocols (a WebSocket), allowed for a session.
pub struct Upgrade {
    /// The protocol asked for, as [`upgrade_protocol`] found it.
    pub protocol: HeaderValue,
    /// The session, checked while the switched connection lasts.
    pub watch: SessionWatch,
}

/// What keypin adds for an authenticated user.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Ready `Authorization: Basic …` value, when the route injects Basic.
    pub authorization: Option<HeaderValue>,
    /// Username for the route's user header, when it injects one.
    pub user: Option<HeaderValue>,
}

/// Fold a lower-case header name as CGI does and compare it with `target`.
fn folds_to(name: &str, target: &str) -> bool {
    name.len() == target.len()
        && name.bytes().zip(target.bytes()).all(|(a, b)| if a == b'_' || a == b'.' { b == b'-' } else { a == b })
}

/// A configured header name as CGI/PHP backends read it (`_` and `.` as `-`): what
/// `folds_to` compares with.
fn cgi_folded(name: &HeaderName) -> HeaderName {
    if name.as_str().contains(['_', '.']) {
        let folded = name.as_str().replace(['_', '.'], "-");
        HeaderName::from_bytes(folded.as_bytes()).expect("a header name with - for _ and . is one")
    } else {
        name.clone()
    }
}

/// Whether `name` is, in any CGI spelling, a common identity header or one of
/// `user_headers` (folded by `cgi_folded`).
fn is_identity_header(name: &HeaderName, user_headers: &[HeaderName]) -> bool {
    let name = name.as_str();
    user_headers.iter().any(|h| folds_to(name, h.as_str())) || IDENTITY_HEADERS.iter().any(|t| folds_to(name, t))
}

/// Headers whose meaning keypin sets or removes: a client's spelling of one with
/// `_` or `.` (`X_Forwarded_For`, `X.Real.IP`, `Transfer_Encoding`), which CGI/PHP
/// fold into the same variable, is removed too.
const FOLDED_SPELLINGS: [&str; 11] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "transfer-encoding",
    "content-length",
    "connection",
    "upgrade",
    "te",
    "host",
];

fn is_folded_spelling(name: &HeaderName) -> bool {
    let name = name.as_str();
    // Lengths first: most names match none, and are passed at once.
    FOLDED_SPELLINGS.iter().any(|t| folds_to(name, t)) && name.bytes().any(|b| b == b'_' || b == b'.')
}

/// Whether a request asks to switch protocols (HTTP/1.1 `Connection: upgrade`);
/// returns the requested protocol.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants { headers.get(header::UPGRADE).cloned() } else { None }
}

/// Whether a `Connection` token names no header to remove beyond [`HOP_BY_HOP`]
/// (which go anyway): one of them, or nothing.
fn is_hop_by_hop_token(token: &str) -> bool {
    token.is_empty() || HOP_BY_HOP.iter().any(|name| name.as_str().eq_ignore_ascii_case(token))
}

/// Where `name` is in [`HOP_BY_HOP`]: one `match` on the name's text (for a
/// standard header, a static string), cheaper than comparing with each.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let i = match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    };
    debug_assert_eq!(HOP_BY_HOP[i], name);
    Some(i)
}

/// Remove hop-by-hop headers, including every header named in `Connection`.
/// One pass over the names present marks those of [`HOP_BY_HOP`] found, then each
/// found is removed (a removal costs a hash and a probe; most messages have one
/// or two). Only names `Connection` lists beyond those are collected, so the
/// usual `keep-alive` and `upgrade` allocate nothing.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut listed = Vec::new();
    for value in headers.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()) {
        // The usual `keep-alive`: no name to parse.
        let others = value.split(',').map(str::trim).filter(|t| !is_hop_by_hop_token(t));
        listed.extend(others.filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()));
    }
    // Bit i: `HOP_BY_HOP[i]` is present.
    let found = headers.keys().fold(0u16, |found, name| match hop_by_hop_index(name) {
        Some(i) => found | 1 << i,
        None => found,
    });
    for (_, name) in HOP_BY_HOP.iter().enumerate().filter(|(i, _)| found & 1 << i != 0) {
        headers.remove(name);
    }
    for name in &listed {
        headers.remove(name);
    }
}

/// Rewrite a client's request headers for the upstream: drop hop-by-hop and every
/// identity header the client sent (the common ones and `user_headers`, the
/// `user_header` of every route as `cgi_folded` gives it, in any spelling), set
/// the forwarding headers, then add keypin's own identity. An upgrade (WebSocket: `upgrade`, what
/// [`upgrade_protocol`] found) keeps its `Connection`/`Upgrade` pair.
pub fn rewrite_request_headers(
    headers: &mut HeaderMap,
    route: &RouteConfig,
    user_headers: &[HeaderName],
    fwd: &Forwarding,
    identity: Option<&Identity>,
    upgrade: Option<HeaderValue>,
) {
    remove_hop_by_hop(headers);

    let spoofed: Vec<HeaderName> =
        headers.keys().filter(|n| is_identity_header(n, user_headers) || is_folded_spelling(n)).cloned().collect();
    for name in &spoofed {
        headers.remove(name);
    }

    set_forwarding_headers(headers, fwd);

    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, UPGRADE_TOKEN);
        headers.insert(header::UPGRADE, proto);
    }
    if let Some(id) = identity {
        if let Some(auth) = &id.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some(user) = &id.user {
            headers.insert(route.user_header.clone(), user.clone());
        }
    }
}

/// `X-Forwarded-For/Proto/Host`, `X-Real-IP` and `Forwarded`. A client that is not a
/// trusted proxy cannot choose any of them: they are replaced, never appended to.
fn set_forwarding_headers(headers: &mut HeaderMap, fwd: &Forwarding) {
    let peer = ip_header_value(fwd.peer);
    if fwd.trusted_peer {
        let prior: Vec<&str> = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
        let chain = if prior.is_empty() {
            peer.clone()
        } else {
            HeaderValue::from_str(&format!("{}, {}", prior.join(", "), fwd.peer)).unwrap_or_else(|_| peer.clone())
        };
        headers.insert(X_FORWARDED_FOR, chain);
        headers.entry(X_FORWARDED_PROTO).or_insert(HTTPS);
        if let Some(host) = &fwd.host {
            headers.entry(X_FORWARDED_HOST).or_insert_with(|| host.clone());
        }
        headers.entry(X_REAL_IP).or_insert(peer);
    } else {
        headers.remove(&FORWARDED);
        headers.insert(X_FORWARDED_FOR, peer.clone());
        headers.insert(X_FORWARDED_PROTO, HTTPS);
        match &fwd.host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
        headers.insert(X_REAL_IP, peer);
    }
}

/// `ip` as a header value. Writing out an address cost 2.6 % of a proxied request,
/// and a gateway's requests come from few addresses (behind an ingress, one), so
/// each worker thread keeps the last one it wrote.
fn ip_header_value(ip: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((seen, value)) if *seen == ip => value.clone(),
        _ => {
            let value = HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value");
            *last = Some((ip, value.clone()));
            value
        }
    })
}

/// Whether an upstream exchange failed because the client's own request body did
/// (a malformed chunk, say): hyper reports the body it was given as the user's.
fn client_body_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    error.downcast_ref::<hyper::Error>().is_some_and(|e| {
        e.is_user() && std::error::Error::source(e).is_some_and(|cause| cause.downcast_ref::<hyper::Error>().is_some())
    })
}

/// Where to send a request upstream: the route's origin, and the origin-form URI
/// of its base path, then the (normalized) request path and the query as sent.
fn upstream_target(
    up: &UpstreamUrl,
    trust: Option<&UpstreamTrust>,
    path: String,
    query: Option<&str>,
) -> Result<(Origin, Uri), GatewayError> {
    let pq = match query {
        Some(q) => format!("{}{path}?{q}", up.base_path),
        None if up.base_path.is_empty() => path,
        None => format!("{}{path}", up.base_path),
    };
    let origin = Origin { scheme: up.scheme.clone(), authority: up.authority.clone(), trust: trust.cloned() };
    let target = PathAndQuery::try_from(pq).map_err(|e| GatewayError::UpstreamRequest(e.into()))?;
    Ok((origin, Uri::from(target)))
}

/// The upstream side of the gateway. Upstream connections come from the pool of
/// the worker thread serving the request ([`Pool::of_this_thread`]), so a request
/// reuses connections driven on its own thread and never wakes another one, and the
/// pools outlive configuration reloads.
pub struct Proxy {
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// The `user_header` of every route, folded as CGI reads it: stripped from
    /// every request in any spelling.
    user_headers: Box<[HeaderName]>,
    /// Routes whose https upstream has a CA of its own (`ca_cert`), by name.
    trust: HashMap<String, UpstreamTrust>,
}

impl Proxy {
    /// `timeout` bounds the wait for the upstream's response head (over HTTP/1.1
    /// give or take a park interval: see `transport::connection::within`).
    pub fn new(timeout: Duration, metrics: Arc<Metrics>, routes: &[RouteConfig]) -> Self {
        let user_headers = routes.iter().map(|r| cgi_folded(&r.user_header)).collect();
        let trust = routes
            .iter()
            .filter(|r| !r.upstream_roots.is_empty())
            .map(|r| (r.name.clone(), UpstreamTrust::new(&r.upstream_roots)))
            .collect();
        Self { timeout, metrics, user_headers, trust }
    }

    /// Send `req` to the route's upstream and stream the answer back. `path` is the
    /// normalized request path.
    #[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
    pub fn forward(
        &self,
        route: &RouteConfig,
        path: String,
        mut req: Box<Request<Incoming>>,
        fwd: &Forwarding,
        identity: Option<&Identity>,
        upgrade: Option<Box<Upgrade>>,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> {
        async move {
            // Only a route with a CA of its own is looked up.
            let trust = if route.upstream_roots.is_empty() { None } else { self.trust.get(&route.name) };
            // A route without an upstream (forward-auth only) serves nothing here.
            let up = route.upstream.as_ref().ok_or(GatewayError::NoRoute)?;
            let (origin, uri) = upstream_target(up, trust, path, req.uri().query())?;
            let (protocol, watch) = upgrade.map(|u| (u.protocol, u.watch)).unzip();
            let client_upgrade = protocol.is_some().then(|| hyper::upgrade::on(&mut *req));

            rewrite_request_headers(req.headers_mut(), route, &self.user_headers, fwd, identity, protocol);
            let host = match &fwd.host {
                Some(host) if route.preserve_host => host.clone(),
                _ => up.host.clone(),
            };
            req.headers_mut().insert(header::HOST, host);
            *req.uri_mut() = uri;
            let version = std::mem::replace(req.version_mut(), Version::HTTP_11);

            let started = tokio::time::Instant::now();
            let pool = Pool::of_this_thread();
            let answer = within(version, started + self.timeout, pool.send(&origin, req)).await;
            self.metrics.upstream_duration(started.elapsed().as_secs_f64());
            let mut resp = answer.map_err(|_| GatewayError::UpstreamTimeout)?.map_err(|e| {
                if client_body_failed(e.as_ref()) {
                    GatewayError::BadRequestBody
                } else {
                    tracing::debug!(error = %e, "upstream exchange failed");
                    GatewayError::UpstreamUnreachable(e)
                }
            })?;

            if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(client_upgrade) = client_upgrade
            {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(crate::web::upgrade::relay(client_upgrade, upstream_upgrade, watch));
                return Ok(resp.map(Either::Left));
            }
            remove_hop_by_hop(resp.headers_mut());
            Ok(resp.map(Either::Left))
        }
    }
}

#[cfg(test)]
mod tests;
