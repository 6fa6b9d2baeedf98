//! Keep-alive HTTP/1.1 connections to upstreams, one pool per worker thread (kept
//! across configuration reloads, found by the thread itself). A
//! request takes the most recently used idle connection to its origin, or opens a
//! new one; the connection comes back when the answer's body has been read to its
//! end. A request an idle connection could not take (the upstream closed it in the
//! meantime) goes out on another one, so keep-alive races never reach the client.
//! Idle connections unused for [`IDLE_TIMEOUT`] are closed, by a background sweep
//! when no request comes.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;
use tokio::time::{Instant, MissedTickBehavior};
use tower_service::Service as _;

/// Idle connections kept per origin in one pool; more are closed.
const IDLE_PER_ORIGIN: usize = 256;
/// An idle connection unused this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a pool that has had idle connections looks for expired ones.
const SWEEP_EVERY: Duration = Duration::from_secs(15);
/// Bound on opening a TCP connection to an upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// This thread's pool: each server worker runs one single-threaded runtime, so
    /// the pool belongs to the worker without being passed along the request path.
    static THREAD_POOL: Arc<Pool> = Pool::new(upstream_connector(CONNECT_TIMEOUT));
}

/// Why an upstream exchange failed.
pub type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream's scheme and authority, and whom it is trusted by: the pool's key.
/// The authority is compared as written: the origins are the configuration's,
/// each written one way, and `Authority`'s own case-blind comparison and hash
/// (a byte at a time) cost more than the rest of a pool lookup.
#[derive(Debug, Clone)]
pub struct Origin {
    pub scheme: Scheme,
    pub authority: Authority,
    /// For https: roots besides the web PKI's (a route's `ca_cert`).
    pub trust: Option<UpstreamTrust>,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.authority.as_str() == other.authority.as_str() && self.scheme == other.scheme && self.trust == other.trust
    }
}

impl Eq for Origin {}

impl std::hash::Hash for Origin {
    /// Equal origins have equal authorities and trust: the scheme need not be hashed.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.authority.as_str().hash(state);
        self.trust.hash(state);
    }
}

/// A TLS client configuration trusting the web PKI roots and a route's own
/// certificates; compared by the certificates it was built from.
#[derive(Clone)]
pub struct UpstreamTrust {
    id: u64,
    config: Arc<rustls::ClientConfig>,
}

impl UpstreamTrust {
    /// The web PKI roots plus `extra`; certificates that are no trust anchor are
    /// passed over (configuration validation refuses them first).
    pub fn new(extra: &[rustls::pki_types::CertificateDer<'static>]) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let mut hasher =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
        for cert in extra {
            hasher.write(cert.as_ref());
            let _ = roots.add(cert.clone());
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::transport::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self { id: hasher.finish(), config: Arc::new(config) }
    }
}

impl PartialEq for UpstreamTrust {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for UpstreamTrust {}

impl std::hash::Hash for UpstreamTrust {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl std::fmt::Debug for UpstreamTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTrust").field("id", &self.id).finish_non_exhaustive()
    }
}

struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
}

fn tcp_connector(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http
}

/// How upstream connections are opened: plain HTTP, or TLS with the web PKI roots
/// and keypin's crypto provider; `connect_timeout` bounds the TCP connect.
pub fn upstream_connector(connect_timeout: Duration) -> HttpsConnector<HttpConnector> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(crate::transport::tls::provider())
        .expect("ring supports the default protocol versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp_connector(connect_timeout))
}

/// One worker's upstream connections.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// By origin, hashed with foldhash: the origins are the configuration's, and
    /// the map is looked up twice a request (SipHash cost more than the rest).
    idle: Mutex<HashMap<Origin, VecDeque<Idle>, foldhash::fast::RandomState>>,
    /// The background sweep runs (it starts with the first idle connection).
    sweeping: AtomicBool,
}

impl Pool {
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Arc<Self> {
        Arc::new(Self { connector, idle: Mutex::default(), sweeping: AtomicBool::new(false) })
    }

    /// The pool of the calling thread (the server worker serving the request).
    pub fn of_this_thread() -> Arc<Self> {
        THREAD_POOL.with(Arc::clone)
    }

    /// Send `req` (origin-form URI, `Host` set) to `origin`. The request comes
    /// boxed, as the request path keeps it: hyper takes it out of the box.
    #[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
    pub fn send(
        self: &Arc<Self>,
        origin: &Origin,
        mut req: Box<Request<Incoming>>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> {
        async move {
            while let Some(mut sender) = self.checkout(origin) {
                if sender.ready().await.is_err() {
                    continue;
                }
                match sender.try_send_request(*req).await {
                    Ok(resp) => return Ok(self.lend(origin, sender, resp)),
                    Err(mut e) => match e.take_message() {
                        // Never written: the connection was closing. Try the next one.
                        Some(unsent) => *req = unsent,
                        None => return Err(e.into_error().into()),
                    },
                }
            }
            // Boxed: opening a connection is the rare path, and its future is large.
            let mut sender = Box::pin(self.connect(origin)).await?;
            let resp = sender.send_request(*req).await?;
            Ok(self.lend(origin, sender, resp))
        }
    }

    /// The most recently returned idle connection to `origin`, closing those past
    /// [`IDLE_TIMEOUT`] on the way.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock();
        let conns = idle.get_mut(origin)?;
        let now = Instant::now();
        while conns.front().is_some_and(|c| now.duration_since(c.since) >= IDLE_TIMEOUT) {
            conns.pop_front();
        }
        while let Some(conn) = conns.pop_back() {
            // A connection not ready is still busy with an exchange: never lent.
            if !conn.sender.is_closed() && conn.sender.is_ready() {
                return Some(conn.sender);
            }
        }
        None
    }

    fn give_back(self: &Arc<Self>, origin: Origin, mut sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        if !sender.is_ready() {
            // The answer ended before the request did (an upstream that answers an
            // upload early): back only once the upload is sent, within the idle time.
            let pool = Arc::downgrade(self);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if tokio::time::timeout(IDLE_TIMEOUT, sender.ready()).await.is_ok_and(|ready| ready.is_ok())
                        && let Some(pool) = pool.upgrade()
                    {
                        pool.give_back(origin, sender);
                    }
                });
            }
            return;
        }
        let mut idle = self.idle.lock();
        let conns = idle.entry(origin).or_default();
        if conns.len() < IDLE_PER_ORIGIN {
            conns.push_back(Idle { sender, since: Instant::now() });
        }
        drop(idle);
        if !self.sweeping.swap(true, Relaxed) {
            self.start_sweep();
        }
    }

    /// Close expired idle connections every [`SWEEP_EVERY`] on this worker, until
    /// the pool is dropped (its thread ends).
    fn start_sweep(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.sweeping.store(false, Relaxed);
        };
        let pool = Arc::downgrade(self);
        runtime.spawn(async move {
            // However the task ends (its pool gone, or its runtime dropped while the
            // thread and its pool live on), the next idle connection starts a sweep.
            let _restart = SweepEnds(pool.clone());
            let mut tick = tokio::time::interval_at(Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.close_expired(Instant::now());
            }
        });
    }

    /// Drop idle connections past [`IDLE_TIMEOUT`] and those the upstream closed;
    /// dropping a connection's sender closes it.
    fn close_expired(&self, now: Instant) {
        let mut idle = self.idle.lock();
        idle.retain(|_, conns| {
            conns.retain(|c| now.duration_since(c.since) < IDLE_TIMEOUT && !c.sender.is_closed());
            !conns.is_empty()
        });
    }

    async fn connect(&self, origin: &Origin) -> Result<SendRequest<Incoming>, UpstreamError> {
        let uri = Uri::builder().scheme(origin.scheme.clone()).authority(origin.authority.clone()).path_and_query("/");
        let mut connector = match &origin.trust {
            None => self.connector.clone(),
            // Rare (a route with its own CA), and only when a connection is opened.
            Some(trust) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*trust.config).clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(tcp_connector(CONNECT_TIMEOUT)),
        };
        let io = connector.call(uri.build()?).await?;
        let (sender, conn) = http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The answer, with its body holding the connection until it has been read.
    fn lend(
        self: &Arc<Self>,
        origin: &Origin,
        sender: SendRequest<Incoming>,
        resp: Response<Incoming>,
    ) -> Response<UpstreamBody> {
        // A switched protocol owns the connection from now on.
        let lent = (resp.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lent {
            pool: Arc::downgrade(self),
            origin: origin.clone(),
            sender,
        });
        resp.map(|body| UpstreamBody { body, lent })
    }
}

/// Marks the pool as not sweeping when its sweep task ends.
struct SweepEnds(Weak<Pool>);

impl Drop for SweepEnds {
    fn drop(&mut self) {
        if let Some(pool) = self.0.upgrade() {
            pool.sweeping.store(false, Relaxed);
        }
    }
}

/// A connection out of the pool, returned when the body it carries has ended.
struct Lent {
    pool: Weak<Pool>,
    origin: Origin,
    sender: SendRequest<Incoming>,
}

impl Lent {
    fn give_back(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(self.origin, self.sender);
        }
    }
}

/// An upstream answer's body, streamed as it arrives.
pub struct UpstreamBody {
    body: Incoming,
    lent: Option<Lent>,
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None))
            && let Some(lent) = self.lent.take()
        {
            lent.give_back();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection mid-answer: it closes
        // with its sender instead of going back.
        if self.body.is_end_stream()
            && let Some(lent) = self.lent.take()
        {
            lent.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncReadExt;

    fn idle_count(pool: &Pool) -> usize {
        pool.idle.lock().values().map(VecDeque::len).sum()
    }

    #[test]
    fn each_thread_keeps_one_pool_for_its_life() {
        let here = Pool::of_this_thread();
        assert!(Arc::ptr_eq(&here, &Pool::of_this_thread()), "the same pool on every call");
        let there = std::thread::spawn(|| Arc::as_ptr(&Pool::of_this_thread()) as usize).join().unwrap();
        assert_ne!(there, Arc::as_ptr(&here) as usize, "another worker thread has a pool of its own");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_in_the_background_once_expired() {
        let pool = Pool::new(upstream_connector(Duration::from_secs(1)));
        let (ours, mut upstream) = tokio::io::duplex(1024);
        let (sender, conn) = http1::handshake::<_, Incoming>(TokioIo::new(ours)).await.unwrap();
        tokio::spawn(conn);
        let origin = Origin { scheme: Scheme::HTTP, authority: Authority::from_static("upstream.test"), trust: None };
        pool.give_back(origin, sender);

        // No request comes. Still kept just before it expires...
        tokio::time::sleep(IDLE_TIMEOUT - Duration::from_secs(1)).await;
        assert_eq!(idle_count(&pool), 1);
        // ...closed by the sweep after.
        tokio::time::sleep(SWEEP_EVERY + Duration::from_secs(1)).await;
        assert_eq!(idle_count(&pool), 0);
        let mut rest = Vec::new();
        assert_eq!(upstream.read_to_end(&mut rest).await.unwrap(), 0, "the upstream sees the close");

        // The sweep is the one task left, and it ends with its pool.
        let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
        assert_eq!(tasks(), 1);
        drop(pool);
        tokio::time::sleep(SWEEP_EVERY * 2).await;
        assert_eq!(tasks(), 0);
    }
}
