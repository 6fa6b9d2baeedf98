//! The request path: normalize, keypin's `/.keypin/` pages, route, session check,
//! secret resolution, identity injection, proxy. `Gateway::handle` never fails:
//! every error becomes a page here, logged once.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::config::{Config, RouteConfig, ServerConfig, canonical_ip};
use crate::observe::metrics::Metrics;
use crate::state::limits::{LimitStore, client_ip};
use crate::state::secrets::Credentials;
use crate::state::secrets::cache::{Resolved, SecretCache, Staleness};
use crate::state::session::{Opened, Revocations, Sessions, strip_cookies};
use crate::transport::server::Handler;
use crate::web::body::Body;
use crate::web::error::GatewayError;
use crate::web::forward_auth;
use crate::web::login::Login;
use crate::web::path::normalize_path;
use crate::web::proxy::{Forwarding, Identity, Proxy, Upgrade, upgrade_protocol};
use crate::web::redirect::login_url;
use crate::web::route::{self, AUTH_PATH, RESERVED_PREFIX, Router, same_origin};
use crate::web::upgrade::SessionWatch;

/// What outlives a configuration: kept across reloads.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub revoked: Revocations,
}

/// Everything a request needs under one configuration, shared by all connections.
/// A reload builds a new one; requests in flight finish on the one they started on.
pub struct Gateway {
    server: ServerConfig,
    /// The `Strict-Transport-Security` value, unless turned off.
    hsts: Option<HeaderValue>,
    router: Arc<Router>,
    proxy: Proxy,
    sessions: Arc<Sessions>,
    secrets: Arc<SecretCache>,
    login: Login,
    limits: Arc<dyn LimitStore>,
    metrics: Arc<Metrics>,
}

/// The `route` label of requests no route matched.
const NO_ROUTE: &str = "none";
/// The `route` label of keypin's own pages.
const KEYPIN_ROUTE: &str = "keypin";
/// The `tracing` target of the access log: one line per request, without query
/// strings, cookies or credentials (`RUST_LOG=keypin::access=off` silences it).
pub const ACCESS_LOG: &str = "keypin::access";

impl Gateway {
    /// `config.session.keys` must not be empty (`App` checks it first).
    pub fn new(config: &Config, secrets: Arc<SecretCache>, limits: Arc<dyn LimitStore>, shared: &Shared) -> Self {
        let sessions = Arc::new(Sessions::new(&config.session, shared.revoked.clone()));
        let metrics = shared.metrics.clone();
        let max_age = config.server.hsts_max_age.as_secs();
        let router = Arc::new(Router::new(config.routes.clone()));
        Self {
            hsts: (max_age > 0)
                .then(|| HeaderValue::try_from(format!("max-age={max_age}")).expect("digits are a valid header value")),
            server: config.server.clone(),
            router: router.clone(),
            proxy: Proxy::new(config.server.upstream_timeout, metrics.clone(), &config.routes),
            login: Login::new(
                config.pin.clone(),
                sessions.clone(),
                secrets.clone(),
                limits.clone(),
                metrics.clone(),
                config.limits.attack_failures.count.get(),
                config.ui.clone(),
            )
            .with_router(router)
            .with_body_timeout(config.server.header_read_timeout),
            sessions,
            secrets,
            limits,
            metrics,
        }
    }

    pub fn secrets(&self) -> &Arc<SecretCache> {
        &self.secrets
    }

    pub fn limits(&self) -> &Arc<dyn LimitStore> {
        &self.limits
    }

    /// Serve one request from `peer`. Never fails.
    #[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
    pub fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + 'static {
        // Boxed once, here: each layer of the request path below keeps it across
        // its awaits, and would keep (and move) all 264 bytes of it again.
        let req = Box::new(req);
        async move {
            // What the access log needs, gathered only when it is on. The path only:
            // queries may carry tokens.
            let access = tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO).then(|| {
                let client = client_ip(peer.ip(), req.headers(), &self.server);
                (std::time::Instant::now(), req.method().clone(), req.uri().path().to_owned(), client)
            });
            let mut route = NO_ROUTE;
            let mut resp = match self.serve(req, peer, &mut route).await {
                Ok(resp) => resp,
                Err(e) => {
                    if e.status().is_server_error() {
                        tracing::warn!(error = %e, route, "request failed");
                    } else {
                        tracing::debug!(error = %e, route, "request refused");
                    }
                    e.into_response(self.login.ui())
                }
            };
            if let Some(hsts) = &self.hsts {
                resp.headers_mut().entry(header::STRICT_TRANSPORT_SECURITY).or_insert_with(|| hsts.clone());
            }
            self.metrics.request(route, resp.status().as_u16());
            if let Some((started, method, path, client)) = access {
                let bytes = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-");
                tracing::info!(
                    target: ACCESS_LOG,
                    %method,
                    path,
                    route,
                    status = resp.status().as_u16(),
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    bytes,
                    client = %client,
                );
            }
            resp
        }
    }

    /// The request path; `label` learns the route's name as soon as it is known.
    #[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
    fn serve<'a>(
        &'a self,
        mut req: Box<Request<Incoming>>,
        peer: SocketAddr,
        label: &mut &'a str,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> {
        async move {
            let peer_ip = canonical_ip(peer.ip());
            if self.server.is_trusted_proxy(peer_ip) && req.version() <= http::Version::HTTP_11 {
                route::adopt_forwarded_host(req.headers_mut());
            }
            // Checked once, here: routed by and forwarded below.
            let authority = route::checked_authority(req.headers(), req.uri(), req.version())
                .map_err(|route::InvalidHost| GatewayError::BadHost)?;
            if req.uri().path() == AUTH_PATH {
                *label = KEYPIN_ROUTE;
                // Boxed, as the sign-in path below.
                return Box::pin(self.forward_auth(req.headers(), peer_ip, label)).await;
            }
            if req.uri().path().starts_with(RESERVED_PREFIX) {
                let path = normalize_path(req.uri().path())?.into_owned();
                *label = KEYPIN_ROUTE;
                let client = client_ip(peer_ip, req.headers(), &self.server);
                // Boxed: the sign-in path is rare, and would otherwise enlarge every request's future.
                return Box::pin(self.login.handle(*req, &path, client)).await;
            }
            // Used in place, not taken apart: the future would keep both.
            let p = self.prepare(&mut req, authority, peer_ip, label).await?;
            let identity = p.identity.as_ref();
            let mut resp = self.proxy.forward(p.route, p.path, req, &p.forwarding, identity, p.upgrade).await?;
            // A shared cache in front must never store one user's answer for others.
            if let Some(cookie) = p.refresh {
                resp.headers_mut().append(header::SET_COOKIE, cookie);
                resp.headers_mut().insert(header::CACHE_CONTROL, NO_STORE);
            } else if identity.is_some() {
                keep_private(resp.headers_mut());
            }
            Ok(resp)
        }
    }

    /// Everything before the upstream call, for a request outside `/.keypin/`
    /// whose `authority` was checked (`route::checked_authority`): normalize the
    /// path, pick the route, check the session, resolve the secret, decide the
    /// identity and the forwarding headers, strip keypin's cookies. `label` learns
    /// the route's name as soon as it is known, refused or not.
    pub async fn prepare<'a, B>(
        &'a self,
        req: &mut Request<B>,
        authority: Option<route::RequestAuthority>,
        peer: IpAddr,
        label: &mut &'a str,
    ) -> Result<Prepared<'a>, GatewayError> {
        let path = normalize_path(req.uri().path())?.into_owned();
        if path.starts_with(RESERVED_PREFIX) {
            // Only a disguised spelling of keypin's own prefix gets here.
            return Err(GatewayError::NoRoute);
        }
        let host = authority.as_ref().map(route::RequestAuthority::host);
        let route = self.router.select(host, &path).ok_or(GatewayError::NoRoute)?;
        *label = &route.name;
        let protocol = upgrade_protocol(req.headers());
        if protocol.is_some() && !same_origin(req.headers(), req.uri()) {
            return Err(GatewayError::CrossSiteUpgrade);
        }
        // A WebSocket needs a session, public path or not, and ends with it.
        let mut upgrade = None;
        let (identity, refresh) = if route::is_public(route, &path) && protocol.is_none() {
            (None, None)
        } else {
            let signed = self.identify(req.headers(), route).await?.ok_or_else(|| login_required(req))?;
            if let Some(protocol) = protocol {
                let (sessions, secrets) = (self.sessions.clone(), self.secrets.clone());
                let watch = SessionWatch::new(sessions, secrets, signed.opened.session.clone());
                upgrade = Some(Box::new(Upgrade { protocol, watch }));
            }
            (Some(signed.identity), signed.opened.refresh.clone())
        };
        strip_cookies(req.headers_mut(), |name| self.is_keypin_cookie(name));
        let host = authority.map(route::RequestAuthority::into_value);
        let forwarding = Forwarding { peer, trusted_peer: self.server.is_trusted_proxy(peer), host };
        Ok(Prepared { route, path, forwarding, identity, refresh, upgrade })
    }

    /// The identity the request's session carries for `route`; `None` without a
    /// valid session. A session whose secret is gone, or now belongs to another
    /// user, ends here: it never acts as anyone else.
    async fn identify(&self, headers: &HeaderMap, route: &RouteConfig) -> Result<Option<Signed>, GatewayError> {
        let opened = match &route.secret_prefix {
            None => self.sessions.open(headers),
            Some(prefix) => self.sessions.open_as(headers, self.login.session_cookie(Some(prefix))),
        };
        let Some(opened) = opened else {
            return Ok(None);
        };
        match self.secrets.resolve(&opened.session.secret, Staleness::AllowStale).await {
            Ok(Resolved::Found(creds)) if creds.username == opened.session.user => {
                Ok(Some(Signed { identity: identity_for(route, &creds), opened }))
            }
            Ok(Resolved::Found(_) | Resolved::NotFound) => {
                self.sessions.revoke(&opened.session);
                Ok(None)
            }
            Err(e) => Err(GatewayError::Backend(e)),
        }
    }

    /// `/.keypin/auth`: may the request an ingress holds pass? (See
    /// `web::forward_auth` for the contract.)
    async fn forward_auth<'a>(
        &'a self,
        headers: &HeaderMap,
        peer: IpAddr,
        label: &mut &'a str,
    ) -> Result<Response<Body>, GatewayError> {
        let original = forward_auth::original(headers, self.server.is_trusted_proxy(peer))?;
        let path = normalize_path(original.target.path())?;
        if path.starts_with(RESERVED_PREFIX) {
            // keypin's own pages need no session.
            return Ok(forward_auth::allowed(None, None));
        }
        let host = original.host.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let route = self.router.select(Some(&host), &path).ok_or(GatewayError::NoRoute)?;
        *label = &route.name;
        if route::is_public(route, &path) {
            return Ok(forward_auth::allowed(None, None));
        }
        Ok(match self.identify(headers, route).await? {
            Some(signed) => {
                forward_auth::allowed(Some((&signed.identity, &route.user_header)), signed.opened.refresh.clone())
            }
            None => forward_auth::sign_in_first(&original),
        })
    }

    /// keypin's cookies: the session cookie and its companions (`…-csrf`).
    fn is_keypin_cookie(&self, name: &str) -> bool {
        let ours = self.sessions.cookie_name();
        name.strip_prefix(ours).is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    }
}

/// The gateway in service when a request arrives serves it to the end; a reload
/// swaps in the next one for later requests.
impl Handler for ArcSwap<Gateway> {
    type Body = Body;

    fn serve(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send + 'static + use<> {
        Gateway::handle(self.load_full(), req, peer)
    }
}

/// A session that holds, and the identity it carries for a route.
struct Signed {
    identity: Identity,
    opened: Arc<Opened>,
}

/// A request ready for its upstream.
pub struct Prepared<'a> {
    pub route: &'a RouteConfig,
    pub path: String,
    pub forwarding: Forwarding,
    pub identity: Option<Identity>,
    /// A re-sealed session cookie to send back, when the idle timer slid.
    pub refresh: Option<HeaderValue>,
    /// For an upgrade: the protocol asked for, and its session, checked while
    /// the connection lasts (boxed: rare, and every request's future holds this).
    pub upgrade: Option<Box<Upgrade>>,
}

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Make an answer built with a user's identity private to that user: `private`
/// added, and the directives meant for shared caches (`public`, `s-maxage`) taken
/// out, unless the upstream already said `no-store` or `private`.
fn keep_private(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    }
    let is = |directive: &str, names: &[&str]| {
        let name = directive.split('=').next().unwrap_or("").trim();
        names.iter().any(|n| name.eq_ignore_ascii_case(n))
    };
    let value = {
        let directives: Vec<&str> = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .collect();
        if directives.iter().any(|d| is(d, &["no-store", "private"])) {
            return;
        }
        let mut kept: Vec<&str> = directives.into_iter().filter(|d| !is(d, &["public", "s-maxage"])).collect();
        kept.push("private");
        kept.join(", ")
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(header::CACHE_CONTROL, value);
    }
}

/// What the route injects for these credentials.
fn identity_for(route: &RouteConfig, creds: &Credentials) -> Identity {
    Identity {
        authorization: route.inject.basic().then(|| creds.basic.clone()),
        user: route.inject.header().then(|| creds.user.clone()),
    }
}

/// Browsers navigating to a page are sent to the login form; API clients get `401`.
fn login_required<B>(req: &Request<B>) -> GatewayError {
    let navigating = matches!(*req.method(), Method::GET | Method::HEAD)
        && req
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"));
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    GatewayError::LoginRequired { location: login_url(target), redirect: navigating }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_control(values: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        keep_private(&mut h);
        h.get_all(header::CACHE_CONTROL).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>().join(" | ")
    }

    #[test]
    fn answers_with_an_identity_are_private_to_it() {
        assert_eq!(cache_control(&[]), "private");
        assert_eq!(cache_control(&["public, max-age=600"]), "max-age=600, private");
        assert_eq!(cache_control(&["max-age=60", "s-maxage=600"]), "max-age=60, private");
        assert_eq!(cache_control(&["no-store"]), "no-store");
        assert_eq!(cache_control(&["Private, max-age=5"]), "Private, max-age=5");
    }
}
