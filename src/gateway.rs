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
use crate::login::{Login, login_url};
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
}

impl Gateway {
    /// `config.session.keys` must not be empty (`App` checks it first).
    pub fn new(config: &Config, secrets: Arc<SecretCache>) -> Self {
        let sessions = Arc::new(Sessions::new(&config.session));
        Self {
            server: config.server.clone(),
            router: Router::new(config.routes.clone()),
            proxy: Proxy::new(config.server.upstream_timeout),
            login: Login::new(config.pin.clone(), sessions.clone(), secrets.clone()),
            sessions,
            secrets,
        }
    }

    /// Serve one request from `peer`. Never fails.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        match self.serve(req, peer).await {
            Ok(resp) => resp,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!(error = %e, peer = %peer.ip(), "request failed");
                } else {
                    tracing::debug!(error = %e, peer = %peer.ip(), "request refused");
                }
                e.into_response()
            }
        }
    }

    async fn serve(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, GatewayError> {
        let path = route::normalize_path(req.uri().path())?.into_owned();
        let peer_ip = canonical_ip(peer.ip());
        if path.starts_with(RESERVED_PREFIX) {
            return self.login.handle(req, &path, peer_ip).await;
        }
        let host = route::request_host(&req);
        let route = self.router.select(host.as_deref(), &path).ok_or(GatewayError::NoRoute)?;
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
