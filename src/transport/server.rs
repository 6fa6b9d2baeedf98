//! The TLS listener: accept loop bounded by `max_connections`, TLS handshake with a
//! deadline, graceful shutdown. Each connection is then served by `connection`.
//!
//! Connections are served thread-per-core: the accept loop hands each one, in turn,
//! to a worker thread running its own single-threaded runtime, where the
//! connection, its requests and the upstream connections they reuse (the pool is
//! the worker thread's) all live. A request then never wakes another thread.
//!
//! The listener knows nothing of the request path: it calls a [`Handler`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use rustls::ServerConfig as TlsConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::observe::metrics::Metrics;
use crate::transport::allocator;
use crate::transport::connection::{self, BoxError, Protocols};
use crate::transport::http2;
use crate::transport::lease::{Lease, Leased};
use crate::transport::shutdown::Shutdown;
use crate::transport::tls_stream::TlsStream;

/// Largest request head (request line + headers) accepted; larger gets `431`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long in-flight requests may run on after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often each worker's runtime wakes without work (see [`Workers::start`]).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What serves the requests of every connection: the request path, as the listener
/// sees it.
pub trait Handler: Send + Sync + 'static {
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Unpin + Send + 'static;

    /// Serve one request from `peer`. Never fails: every error is an answer. (The
    /// listener boxes the future: hyper keeps a slot for it in every connection.)
    fn serve(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Self::Body>> + Send + 'static + use<Self>;
}

/// Settings of the TLS listener.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Bound on the TLS handshake and on reading each request head.
    pub header_read_timeout: Duration,
    /// How long a connection may idle between requests.
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

/// The listeners: TLS, and optionally plain HTTP/1.1 (behind a TLS-terminating
/// ingress).
pub struct Listeners {
    pub tls: TcpListener,
    pub plain: Option<TcpListener>,
}

/// Serve connections from `listeners` on `workers` until `shutdown` resolves, then
/// stop accepting and let in-flight requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn run<H: Handler>(
    listeners: Listeners,
    workers: Workers,
    tls: Arc<TlsConfig>,
    handler: Arc<H>,
    settings: ListenerSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    // A connection holds its slot until it ends (see `Lease`): the shutdown waits
    // for every slot to come back. (More than 2^32 connections cannot be open.)
    let slot_count = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(slot_count as usize));
    // Every connection holds it. (Were this future dropped, the workers would
    // stop, and the connections with them.)
    let stop = Shutdown::new();
    let protocols = Arc::new(Protocols::new(
        settings.header_read_timeout,
        settings.keepalive_timeout,
        MAX_HEADER_BYTES,
        metrics.parked_connections.clone(),
    ));
    tokio::pin!(shutdown);

    for worker in (0..workers.len()).cycle() {
        let Some(accepted) = next_connection(&listeners, &slots, shutdown.as_mut()).await else {
            break;
        };
        let lease = Lease::new(accepted.permit, metrics.clone());
        let connection = Connection {
            tcp: accepted.tcp,
            peer: accepted.peer,
            tls: (!accepted.plain).then(|| tls.clone()),
            protocols: protocols.clone(),
            shutdown: stop.clone(),
        };
        workers.spawn(worker, serve_connection(connection, handler.clone(), lease));
    }
    drop(listeners);
    stop.stop();
    let open = slot_count as usize - slots.available_permits();
    tracing::info!(connections = open, "shutting down; waiting for in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(slot_count)).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}");
    }
    workers.stop().await;
}

/// One accepted connection, before the worker serves it.
struct Connection {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    /// `None` on the plain listener.
    tls: Option<Arc<TlsConfig>>,
    protocols: Arc<Protocols>,
    shutdown: Shutdown,
}

/// Serve one connection on the worker: TLS handshake (on the TLS listener), then
/// HTTP/2 if ALPN chose it, else HTTP/1.1. The stream carries `lease` (see
/// `transport::lease`), also into an upgrade.
fn serve_connection<H: Handler>(
    conn: Connection,
    handler: Arc<H>,
    lease: Lease,
) -> impl Future<Output = ()> + Send + 'static {
    let Connection { tcp, peer, tls, protocols, shutdown } = conn;
    // Boxed, not type-erased: the request's future stays inlinable.
    let handler = move |req: Request<Incoming>| Box::pin(handler.serve(req, peer));
    // Made here, run on the worker (whose reactor registers the socket), and
    // boxed: its state is freed once done, not kept in the task. `Err`: the plain
    // listener's stream, only registered.
    let stream = match tls {
        Some(tls) => Ok(Box::pin(handshake(tcp, tls, protocols.head_timeout(), lease))),
        None => Err(Box::pin(register(tcp, lease))),
    };
    // What the task keeps, every idle connection keeps: each value below is moved
    // in once and borrowed from there, whatever the paths use.
    async move {
        let served = match stream {
            Err(plain) => match plain.await {
                Ok(plain) => connection::serve_http1(plain, &protocols, &handler, &shutdown).await,
                Err(e) => return tracing::warn!(%peer, error = %e, "could not register the connection"),
            },
            Ok(handshake) => {
                let tls = match handshake.await {
                    Ok(tls) => tls,
                    Err(Handshake::Register(e)) => {
                        return tracing::warn!(%peer, error = %e, "could not register the connection");
                    }
                    Err(Handshake::Failed(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(Handshake::TimedOut) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    Err(Handshake::PlainHttp) => return tracing::debug!(%peer, "plain HTTP on the TLS port: 400"),
                };
                // HTTP/2 only if ALPN chose it (RFC 9113 §3.3: over TLS it is negotiated).
                if tls.get_ref().alpn_protocol() == Some(b"h2") {
                    Box::pin(http2::serve_http2(tls, &protocols, &handler, &shutdown)).await
                } else {
                    connection::serve_http1(tls, &protocols, &handler, &shutdown).await
                }
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// An accepted connection and its slot.
struct Accepted {
    permit: OwnedSemaphorePermit,
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    plain: bool,
}

/// The next connection on either listener, once a slot is free for it (excess
/// connections stay in the backlog); `None` once `shutdown` resolves.
async fn next_connection(
    listeners: &Listeners,
    slots: &Arc<Semaphore>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<Accepted> {
    let plain_accept = async || match &listeners.plain {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    };
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => return None,
        };
        let (accepted, plain) = tokio::select! {
            accepted = listeners.tls.accept() => (accepted, false),
            accepted = plain_accept() => (accepted, true),
            () = &mut shutdown => return None,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match tcp.into_std() {
            Ok(tcp) => return Some(Accepted { permit, tcp, peer, plain }),
            Err(e) => tracing::debug!(%peer, error = %e, "could not hand the connection over"),
        }
    }
}

/// Why a connection has no TLS session.
#[derive(Debug)]
enum Handshake {
    /// The worker's reactor did not take the socket.
    Register(io::Error),
    Failed(io::Error),
    TimedOut,
    /// Plain HTTP on the TLS port: answered with a `400` that says to use https.
    PlainHttp,
}

/// What a plain-HTTP request to the TLS port gets (as nginx answers it).
const USE_HTTPS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 46\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use an https:// URL.\r\n";

/// Register `tcp` with the current runtime, for the plain listener. The stream
/// comes boxed (see `connection::serve_http1`), with `lease`.
async fn register(tcp: std::net::TcpStream, lease: Lease) -> io::Result<Box<Leased<TcpStream>>> {
    Ok(Box::new(Leased::new(TcpStream::from_std(tcp)?, lease)))
}

/// Register `tcp` with the current runtime and run the TLS handshake, within
/// `timeout`. The stream comes boxed (see `connection::serve_http1`), with `lease`;
/// a failed handshake is counted.
async fn handshake(
    tcp: std::net::TcpStream,
    tls: Arc<TlsConfig>,
    timeout: Duration,
    lease: Lease,
) -> Result<Box<Leased<TlsStream<TcpStream>>>, Handshake> {
    let tcp = TcpStream::from_std(tcp).map_err(Handshake::Register)?;
    let accept = async move {
        // A TLS client's first byte is a handshake record (22); an HTTP request
        // starts with a method in capitals. Peeking reads nothing away.
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await.map_err(Handshake::Failed)? == 1 && first[0].is_ascii_uppercase() {
            use tokio::io::AsyncWriteExt as _;
            let mut tcp = tcp;
            let _ = tcp.write_all(USE_HTTPS).await;
            let _ = tcp.shutdown().await;
            return Err(Handshake::PlainHttp);
        }
        TlsStream::accept(tcp, tls).await.map_err(Handshake::Failed)
    };
    match tokio::time::timeout(timeout, accept).await.unwrap_or(Err(Handshake::TimedOut)) {
        Ok(stream) => Ok(Box::new(Leased::new(stream, lease))),
        Err(e) => {
            if matches!(e, Handshake::Failed(_) | Handshake::TimedOut) {
                lease.handshake_failed();
            }
            Err(e)
        }
    }
}

/// Worker threads, each running a single-threaded runtime until stopped.
pub struct Workers {
    handles: Vec<Handle>,
    stop: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Start `count` (at least one) worker threads.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut workers = Self { handles: Vec::new(), stop: Vec::new(), threads: Vec::new() };
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            workers.handles.push(runtime.handle().clone());
            workers.stop.push(stop);
            let thread = std::thread::Builder::new().name(format!("keypin-worker-{i}")).spawn(move || {
                runtime.block_on(async {
                    tokio::pin!(stopped);
                    // A heartbeat: with a timer always due within a second, arming a
                    // request's timers (header read, upstream answer) never moves the
                    // driver's next wake-up earlier, which would cost an eventfd write.
                    let mut tick = tokio::time::interval(HEARTBEAT);
                    let mut release = tokio::time::interval(allocator::THREAD_CACHE_RELEASE);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = release.tick() => allocator::release_thread_cache(),
                            _ = &mut stopped => break,
                        }
                    }
                });
                // Dropping the runtime cancels what is left: connections past the grace.
            })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    fn len(&self) -> usize {
        self.handles.len()
    }

    fn spawn(&self, worker: usize, task: impl Future<Output = ()> + Send + 'static) {
        drop(self.handles[worker].spawn(task));
    }

    /// Stop every worker and wait for its thread to end.
    async fn stop(self) {
        drop(self.stop);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// The address a listener is bound to, for start-up messages and tests.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("a bound listener has an address")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{Request, Response};
    use http_body_util::Empty;
    use hyper::body::Incoming;
    use tokio::sync::Semaphore;

    use super::{Connection, Handler, serve_connection};
    use crate::observe::metrics::Metrics;
    use crate::transport::connection::Protocols;
    use crate::transport::lease::Lease;
    use crate::transport::shutdown::Shutdown;

    struct Nothing;

    impl Handler for Nothing {
        type Body = Empty<bytes::Bytes>;

        fn serve(
            &self,
            _: Request<Incoming>,
            _: std::net::SocketAddr,
        ) -> impl Future<Output = Response<Self::Body>> + Send + 'static + use<> {
            std::future::ready(Response::new(Empty::new()))
        }
    }

    #[tokio::test]
    async fn a_connections_task_fits_the_allocators_512_byte_class() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (tcp, peer) = listener.accept().unwrap();
        let parked = prometheus_client::metrics::gauge::Gauge::default();
        let timeout = std::time::Duration::from_secs(10);
        let protocols = Arc::new(Protocols::new(timeout, timeout, 16 * 1024, parked));
        let conn = Connection { tcp, peer, tls: None, protocols, shutdown: Shutdown::new() };
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let task = serve_connection(conn, Arc::new(Nothing), Lease::new(permit, Arc::new(Metrics::new())));
        // Every idle connection keeps it. tokio adds 104 bytes and rounds up to 128:
        // up to 408 bytes the task takes jemalloc's 512-byte class, above it the
        // 640-byte one, 1.2 MiB more at 10,000 connections (docs/benchmarks.md,
        // Memory).
        assert!(size_of_val(&task) <= 408, "{} bytes", size_of_val(&task));
    }
}
