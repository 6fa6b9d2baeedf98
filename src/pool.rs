//! Keep-alive HTTP/1.1 connections to upstreams, one pool per server worker. A
//! request takes the most recently used idle connection to its origin, or opens a
//! new one; the connection comes back when the answer's body has been read to its
//! end. A request an idle connection could not take (the upstream closed it in the
//! meantime) goes out on another one, so keep-alive races never reach the client.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service as _;

/// Idle connections kept per origin in one pool; more are closed.
const IDLE_PER_ORIGIN: usize = 256;
/// An idle connection unused this long is closed when the pool is next used.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upstream exchange failed.
pub type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream's scheme and authority: the pool's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub scheme: Scheme,
    pub authority: Authority,
}

struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
}

/// One worker's upstream connections.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<HashMap<Origin, VecDeque<Idle>>>,
}

impl Pool {
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Arc<Self> {
        Arc::new(Self { connector, idle: Mutex::default() })
    }

    /// Send `req` (origin-form URI, `Host` set) to `origin`.
    pub async fn send(
        self: &Arc<Self>,
        origin: &Origin,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        while let Some(mut sender) = self.checkout(origin) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.lend(origin, sender, resp)),
                Err(mut e) => match e.take_message() {
                    // Never written: the connection was closing. Try the next one.
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        // Boxed: opening a connection is the rare path, and its future is large.
        let mut sender = Box::pin(self.connect(origin)).await?;
        let resp = sender.send_request(req).await?;
        Ok(self.lend(origin, sender, resp))
    }

    /// The most recently returned idle connection to `origin`, closing those past
    /// [`IDLE_TIMEOUT`] on the way.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().expect("pool lock");
        let conns = idle.get_mut(origin)?;
        let now = Instant::now();
        while conns.front().is_some_and(|c| now.duration_since(c.since) >= IDLE_TIMEOUT) {
            conns.pop_front();
        }
        while let Some(conn) = conns.pop_back() {
            if !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    fn give_back(&self, origin: Origin, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        let conns = idle.entry(origin).or_default();
        if conns.len() < IDLE_PER_ORIGIN {
            conns.push_back(Idle { sender, since: Instant::now() });
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<SendRequest<Incoming>, UpstreamError> {
        let uri = Uri::builder().scheme(origin.scheme.clone()).authority(origin.authority.clone()).path_and_query("/");
        let io = self.connector.clone().call(uri.build()?).await?;
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
