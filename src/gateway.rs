//! The request path: normalize, reserved `/.keypin/` URLs, route, (session check),
//! proxy. `Gateway::handle` never fails: every error becomes a page here, logged once.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::config::{Config, ServerConfig, canonical_ip};
use crate::error::GatewayError;
use crate::proxy::{Forwarding, Proxy, upgrade_protocol};
use crate::route::{self, RESERVED_PREFIX, Router};

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
}

impl Gateway {
    pub fn new(config: &Config) -> Self {
        Self {
            server: config.server.clone(),
            router: Router::new(config.routes.clone()),
            proxy: Proxy::new(config.server.upstream_timeout),
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

    async fn serve(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, GatewayError> {
        let path = route::normalize_path(req.uri().path())?.into_owned();
        if path.starts_with(RESERVED_PREFIX) {
            // Login and logout pages live here.
            return Err(GatewayError::NoRoute);
        }
        let host = route::request_host(&req);
        let route = self
            .router
            .select(host.as_deref(), &path)
            .ok_or(GatewayError::NoRoute)?;
        if upgrade_protocol(req.headers()).is_some() && !same_origin(&req) {
            return Err(GatewayError::CrossSiteUpgrade);
        }
        // The session check goes here; public paths skip it.
        let _public = route::is_public(route, &path);

        let peer_ip = canonical_ip(peer.ip());
        let fwd = Forwarding {
            peer: peer_ip,
            trusted_peer: self.server.is_trusted_proxy(peer_ip),
            host: req.headers().get(header::HOST).cloned().or_else(|| {
                req.uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
        };
        self.proxy.forward(route, &path, req, &fwd, None).await
    }
}

/// A browser's `Origin`, when present, must name the host it is talking to; a
/// cross-site page must not open a WebSocket with the user's session.
fn same_origin<B>(req: &Request<B>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = req.headers().get(header::HOST).map(HeaderValue::as_bytes) else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(_, authority)| authority.as_bytes().eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_match_host() {
        let req = |origin: Option<&str>| {
            let mut b = Request::builder()
                .uri("/ws")
                .header("host", "app.example.com:8443");
            if let Some(o) = origin {
                b = b.header("origin", o);
            }
            b.body(()).unwrap()
        };
        assert!(same_origin(&req(None)));
        assert!(same_origin(&req(Some("https://App.Example.com:8443"))));
        assert!(!same_origin(&req(Some("https://evil.example"))));
        assert!(!same_origin(&req(Some("https://app.example.com"))));
        assert!(!same_origin(&req(Some("null"))));
    }
}
