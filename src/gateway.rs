//! The request path: normalize, keypin's `/.keypin/` pages, route, session check,
//! secret resolution, identity injection, proxy. `Gateway::handle` never fails:
//! every error becomes a page here, logged once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::config::{Config, RouteConfig, ServerConfig, canonical_ip};
use crate::error::GatewayError;
use crate::limits::{LimitStore, client_ip};
use crate::login::{Login, login_url};
use crate::metrics::Metrics;
use crate::proxy::{Forwarding, Identity, Proxy, upgrade_protocol};
use crate::route::{self, RESERVED_PREFIX, Router, same_origin};
use crate::secrets::Credentials;
use crate::secrets::cache::{Resolved, SecretCache, Staleness};
use crate::session::{Sessions, strip_cookies};

/// Response body: an upstream's streamed body, or a page keypin made itself.
pub type Body = Either<Incoming, Full<Bytes>>;

/// A body keypin made itself.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}

/// Everything a request needs, shared by all connections.
pub struct Gateway {
    server: ServerConfig,
    router: Router,
    proxy: Proxy,
    sessions: Arc<Sessions>,
    secrets: Arc<SecretCache>,
    login: Login,
    metrics: Arc<Metrics>,
}

/// The `route` label of requests no route matched.
const NO_ROUTE: &str = "none";
/// The `route` label of keypin's own pages.
const KEYPIN_ROUTE: &str = "keypin";

impl Gateway {
    /// `config.session.keys` must not be empty (`App` checks it first).
    pub fn new(config: &Config, secrets: Arc<SecretCache>, limits: Arc<dyn LimitStore>, metrics: Arc<Metrics>) -> Self {
        let sessions = Arc::new(Sessions::new(&config.session));
        Self {
            server: config.server.clone(),
            router: Router::new(config.routes.clone()),
            proxy: Proxy::new(config.server.upstream_timeout, metrics.clone()),
            login: Login::new(config.pin.clone(), sessions.clone(), secrets.clone(), limits, metrics.clone()),
            sessions,
            secrets,
            metrics,
        }
    }

    /// Serve one request from `peer`. Never fails.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let mut route = NO_ROUTE;
        let resp = match self.serve(req, peer, &mut route).await {
            Ok(resp) => resp,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!(error = %e, route, "request failed");
                } else {
                    tracing::debug!(error = %e, route, "request refused");
                }
                e.into_response()
            }
        };
        self.metrics.request(route, resp.status().as_u16());
        resp
    }

    /// The request path; `label` learns the route's name as soon as it is known.
    async fn serve<'a>(
        &'a self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        label: &mut &'a str,
    ) -> Result<Response<Body>, GatewayError> {
        let path = route::normalize_path(req.uri().path())?.into_owned();
        let peer_ip = canonical_ip(peer.ip());
        if path.starts_with(RESERVED_PREFIX) {
            *label = KEYPIN_ROUTE;
            let client = client_ip(peer_ip, req.headers(), &self.server);
            return self.login.handle(req, &path, client).await;
        }
        let host = route::request_host(&req);
        let route = self.router.select(host.as_deref(), &path).ok_or(GatewayError::NoRoute)?;
        *label = &route.name;
        if upgrade_protocol(req.headers()).is_some() && !same_origin(req.headers(), req.uri()) {
            return Err(GatewayError::CrossSiteUpgrade);
        }

        let (identity, refresh) = if route::is_public(route, &path) {
            (None, None)
        } else {
            let opened = self.sessions.open(req.headers()).ok_or_else(|| login_required(&req))?;
            let creds = match self.secrets.resolve(&opened.session.secret, Staleness::AllowStale).await {
                Ok(Resolved::Found(creds)) => creds,
                Ok(Resolved::NotFound) => {
                    // The secret was deleted or disabled: the session ends with it.
                    self.sessions.revoke(&opened.session);
                    return Err(login_required(&req));
                }
                Err(e) => return Err(GatewayError::Backend(e)),
            };
            (Some(identity_for(route, &creds)), opened.refresh)
        };

        strip_cookies(req.headers_mut(), |name| self.is_keypin_cookie(name));
        let fwd = self.forwarding(&req, peer_ip);
        let mut resp = self.proxy.forward(route, &path, req, &fwd, identity.as_ref()).await?;
        if let Some(cookie) = refresh {
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(resp)
    }

    /// keypin's cookies: the session cookie and its companions (`…-csrf`).
    fn is_keypin_cookie(&self, name: &str) -> bool {
        let ours = self.sessions.cookie_name();
        name.strip_prefix(ours).is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    }

    fn forwarding<B>(&self, req: &Request<B>, peer: IpAddr) -> Forwarding {
        Forwarding {
            peer,
            trusted_peer: self.server.is_trusted_proxy(peer),
            host: route::request_authority(req.headers(), req.uri()).and_then(|a| HeaderValue::from_str(a).ok()),
        }
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
