//! The admin listener (plain HTTP, loopback by default): `/healthz` (the process
//! runs), `/readyz` (listeners up and the secret backend answering) and `/metrics`
//! (Prometheus text). Never serves user traffic.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use arc_swap::ArcSwap;

use crate::observe::metrics::Metrics;
use crate::transport::server::SHUTDOWN_GRACE;
use crate::web::gateway::Gateway;

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin endpoints report on: the gateway in service (reloads swap it).
pub struct Admin {
    pub gateway: Arc<ArcSwap<Gateway>>,
    pub metrics: Arc<Metrics>,
}

impl Admin {
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, TEXT, "ok\n".to_owned()),
            (&Method::GET | &Method::HEAD, "/readyz") => {
                // The limit store's state is named, never a reason to be unready:
                // sessions are served while a shared store is away.
                let gateway = self.gateway.load();
                let store = format!("limit store: {}\n", gateway.limits().health().describe());
                match gateway.secrets().health().ready() {
                    Ok(()) => (StatusCode::OK, TEXT, format!("ready\n{store}")),
                    Err(kind) => {
                        (StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("not ready: secret backend {kind}\n{store}"))
                    }
                }
            }
            (&Method::GET | &Method::HEAD, "/metrics") => {
                let limits = self.gateway.load().limits().clone();
                self.metrics.active_lockouts.set(i64::try_from(limits.active_lockouts()).unwrap_or(i64::MAX));
                crate::state::limits::observe_attack_mode(limits.as_ref(), &self.metrics);
                (StatusCode::OK, PROMETHEUS, self.metrics.render())
            }
            _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".to_owned()),
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        resp
    }
}

/// Serve the admin endpoints until `shutdown` resolves.
pub async fn run(listener: TcpListener, admin: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => { tracing::warn!(error = %e, "admin accept failed"); continue; }
            },
            () = &mut shutdown => break,
        };
        let admin = admin.clone();
        let service = service_fn(move |req| {
            let admin = admin.clone();
            async move { Ok::<_, Infallible>(admin.answer(&req)) }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}
