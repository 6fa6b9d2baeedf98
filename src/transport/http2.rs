//! One HTTP/2 connection (what ALPN chose), served by hyper until the client closes
//! it, it errs, or the server shuts down; or until it idles: a connection with no
//! stream open for the idle timeout (`keepalive_timeout`, the bound HTTP/1.1's
//! parked connections have too; `header_read_timeout` before its first request) is
//! sent a GOAWAY and closed. A client that opens connections and sends nothing
//! holds no slot of `max_connections` for longer than the head timeout.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::transport::connection::{BoxError, Protocols, Tracked};
use crate::transport::shutdown::Shutdown;

/// Serve HTTP/2 on `io` until the client closes it, it errs, it idles past the
/// timeout, or `shutdown` stops and its in-flight requests are answered.
///
/// Box the future: hyper's HTTP/2 state is large, and the task of an HTTP/1.1
/// connection need not carry room for it.
pub async fn serve_http2<T, H, F, B>(
    io: T,
    protocols: &Protocols,
    handler: &H,
    shutdown: &Shutdown,
) -> Result<(), hyper::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let streams = Arc::new(Streams::new());
    let service = {
        let (handler, streams) = (handler.clone(), streams.clone());
        service_fn(move |req| {
            let open = Open::start(&streams);
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await.map(|body| Tracked { body, _request: open })) }
        })
    };
    let conn = protocols.http2().serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let (head, idle) = (protocols.head_timeout(), protocols.idle_timeout());
    // The first request is awaited as a head is, later ones as keep-alive.
    let bound = |streams: &Streams| if streams.served() { idle } else { head };
    loop {
        // Looked at again when due: streams that opened or ended meanwhile move it.
        let due = streams.quiet_since().unwrap_or_else(Instant::now) + bound(&streams);
        tokio::select! {
            done = conn.as_mut() => return done,
            () = shutdown.stopped() => {
                conn.as_mut().graceful_shutdown();
                return conn.await;
            }
            () = tokio::time::sleep_until(due) => {
                if streams.quiet_since().is_some_and(|since| since.elapsed() >= bound(&streams)) {
                    break;
                }
            }
        }
    }
    // Idle: a GOAWAY, then the close. hyper's graceful close waits for the client to
    // answer a PING, which a client that sends nothing never does: it gets as long
    // as it had to send a request, then the connection is dropped.
    tracing::debug!("HTTP/2 connection idle; closing it");
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(bound(&streams), conn).await {
        Ok(done) => done,
        Err(_) => Ok(()),
    }
}

/// The streams of one connection: how many are open, since when none is, and
/// whether one ever was.
struct Streams {
    open: AtomicUsize,
    served: AtomicBool,
    /// When the last stream ended (or the connection began).
    last_end: Mutex<Instant>,
}

impl Streams {
    fn new() -> Self {
        Self { open: AtomicUsize::new(0), served: AtomicBool::new(false), last_end: Mutex::new(Instant::now()) }
    }

    /// Whether a stream was ever opened on the connection.
    fn served(&self) -> bool {
        self.served.load(Relaxed)
    }

    /// Since when no stream is open; `None` while one is.
    fn quiet_since(&self) -> Option<Instant> {
        (self.open.load(Relaxed) == 0).then(|| *self.last_end.lock())
    }
}

/// One open stream, from the service call to the end of its answer's body.
struct Open(Arc<Streams>);

impl Open {
    fn start(streams: &Arc<Streams>) -> Self {
        streams.open.fetch_add(1, Relaxed);
        streams.served.store(true, Relaxed);
        Self(streams.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        *self.0.last_end.lock() = Instant::now();
        self.0.open.fetch_sub(1, Relaxed);
    }
}
