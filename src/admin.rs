//! The admin listener (plain HTTP, loopback by default): `/healthz` (the process
//! runs) and `/readyz` (listeners up and the secret backend answering) for probes.
//! Never serves user traffic.

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

use crate::secrets::cache::BackendHealth;
use crate::server::SHUTDOWN_GRACE;

fn answer(req: &Request<Incoming>, health: &BackendHealth) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n".to_owned()),
        (&Method::GET | &Method::HEAD, "/readyz") => match health.ready() {
            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
            Err(kind) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: secret backend {kind}\n")),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Serve the admin endpoints until `shutdown` resolves.
pub async fn run(listener: TcpListener, health: Arc<BackendHealth>, shutdown: impl Future<Output = ()>) {
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
        let health = health.clone();
        let service = service_fn(move |req| {
            let health = health.clone();
            async move { Ok::<_, Infallible>(answer(&req, &health)) }
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
