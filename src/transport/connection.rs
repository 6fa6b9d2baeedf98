//! One client connection after its TLS handshake, served until it closes.
//!
//! HTTP/2 (chosen by ALPN) is served by `transport::http2`. HTTP/1.1 is served in
//! turns, so that an idle keep-alive connection costs little: hyper serves while
//! requests come, and a connection with no request in flight and no byte moved for
//! [`PARK_AFTER`] is *parked*. Hyper is stopped between two requests and its
//! buffers (some 24 KiB: read buffer, write buffer, request slot) are freed; only
//! the TLS stream stays, waiting for the next request's first byte. That byte
//! starts hyper again, put back in front of the stream.
//!
//! Parking never cuts a request. Hyper is asked to stop only after a request of
//! the turn was answered, with none in flight and none the connection's last, and
//! the stream is taken back only if hyper stopped at once, idle between two
//! messages; what it had read of the next request comes back with the stream.
//! Hyper caught mid-exchange (writing to a client that stopped reading, say)
//! finishes it and closes the connection. A turn starts inside a request head, so
//! it is not parked before that request has started: a client trickling its head
//! gets at most twice hyper's head timeout (one turn that parks it, one that
//! cannot), each looked at once a park interval (`head_timer`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::transport::shutdown::{Shutdown, Stopped};

mod buffers;
mod head_timer;
mod turn;
mod within;
pub use buffers::HoldsBuffers;
use head_timer::HeadTimer;
use turn::{Turn, TurnWatch};
pub(crate) use within::within;

/// A connection quiet this long between requests is parked (sooner with a head
/// timeout under four times this: see `Protocols::new`).
pub const PARK_AFTER: Duration = Duration::from_secs(1);
/// Bound on closing a connection ourselves (TLS `close_notify`, then FIN).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How connections are served: hyper's settings, built once per listener.
pub struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// Bound on each request head and on the TLS handshake.
    head_timeout: Duration,
    /// How long a connection waits for its next request before it is closed.
    idle_timeout: Duration,
    /// How often an awake connection is looked at for parking.
    park_after: Duration,
    /// Counts the connections parked now.
    parked: Gauge,
}

impl Protocols {
    /// hyper's HTTP/2 settings.
    pub(crate) fn http2(&self) -> &http2::Builder<TokioExecutor> {
        &self.http2
    }

    /// The bound on each request head and (see `server`) on the TLS handshake.
    pub fn head_timeout(&self) -> Duration {
        self.head_timeout
    }

    /// How long a connection idles between requests (HTTP/2: with no stream
    /// open) before it is closed.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// `head_timeout` bounds each request head, give or take a park interval
    /// (hyper's timeout, read off the clock by `head_timer`; it also runs while an
    /// awake connection waits for its next request: the connection is parked well
    /// before, within half of it);
    /// `idle_timeout` a connection's wait for its next request. Heads are at most
    /// `max_head` bytes; `parked` counts parked connections.
    pub fn new(head_timeout: Duration, idle_timeout: Duration, max_head: usize, parked: Gauge) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(HeadTimer)
            .header_read_timeout(head_timeout)
            .max_buf_size(max_head)
            // Flatten head and body into one write: over TLS that is one record and
            // one syscall instead of two for small answers.
            .writev(false)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new()).max_header_list_size(max_head as u32);
        let park_after = PARK_AFTER.min(head_timeout / 4);
        Self { http1: h1, http2: h2, head_timeout, idle_timeout, park_after, parked }
    }
}

/// Serve HTTP/1.1 on `io` until the client closes it, it errs, it idles past the
/// timeout, or `shutdown` stops and its in-flight requests are answered.
///
/// What this future keeps while the connection is parked is kept by every idle
/// connection, so it is small: hyper's turn is boxed, a large stream should come
/// boxed (a TLS stream is over a kilobyte, and moves between hyper and the parked
/// wait), the rest is borrowed from the connection's task. It is an `async` block,
/// not an `async fn`, whose arguments would each be kept twice.
#[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
pub fn serve_http1<'a, T, H, F, B>(
    mut io: T,
    protocols: &'a Protocols,
    handler: &'a H,
    shutdown: &'a Shutdown,
) -> impl Future<Output = Result<(), hyper::Error>> + 'a
where
    T: HoldsBuffers + AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    async move {
        // The first request is awaited as a head is; later ones as keep-alive.
        let mut wait = protocols.head_timeout;
        loop {
            let Some(first) = first_byte(&mut io, wait, &protocols.parked, shutdown).await else {
                close(io).await;
                return Ok(());
            };
            io.hold_buffers(true);
            match Box::pin(serve_awake(io, first, protocols, handler, shutdown)).await? {
                Some(mut parked) => {
                    parked.hold_buffers(false);
                    (io, wait) = (parked, protocols.idle_timeout);
                }
                None => return Ok(()),
            }
        }
    }
}

/// Serve `io` awake, `unread` first, in turns of hyper, until a turn is stopped to
/// park the connection with nothing read past its last answer; the stream comes
/// back then. `None` once hyper has closed the connection (the client's wish, an
/// error, the shutdown) or handed it to an upgrade.
/// One piece on purpose: every awake connection keeps this state machine, and
/// helpers would each hold a copy of the stream across their `await`s.
async fn serve_awake<T, H, F, B>(
    mut io: T,
    mut unread: Bytes,
    protocols: &Protocols,
    handler: &H,
    shutdown: &Shutdown,
) -> Result<Option<T>, hyper::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    loop {
        // What this turn's hyper does, for the decision to park it.
        let activity = Arc::new(Activity::default());
        let watched = Watched { io, unread, activity: activity.clone() };
        let service = {
            let (handler, activity) = (handler.clone(), activity.clone());
            service_fn(move |req: Request<Incoming>| {
                // Counted in flight until the answer's body is done.
                let request = InFlight::start(&activity);
                let reused = req.method() != Method::CONNECT && keeps_alive(req.version(), req.headers());
                let response = handler(req);
                async move {
                    let response = response.await;
                    if !reused
                        || response.status() == StatusCode::SWITCHING_PROTOCOLS
                        || !keeps_alive(Version::HTTP_11, response.headers())
                    {
                        // Hyper closes the connection (or hands it over) after this
                        // exchange, and would stop at once even in its middle.
                        request.0.last_exchange();
                    }
                    Ok::<_, Infallible>(response.map(|body| Tracked { body, _request: request }))
                }
            })
        };
        let mut conn = protocols.http1.serve_connection(TokioIo::new(watched), service).with_upgrades();
        // `stopping`: hyper was asked to stop, to park or for the server's shutdown.
        let (mut watch, mut stopping) = (TurnWatch::new(protocols.park_after, shutdown), false);
        let done = loop {
            match watch.next(&mut conn, stopping).await {
                Turn::Done(done) => break done,
                Turn::Quiet => {
                    if activity.may_park() {
                        stopping = true;
                        activity.park();
                        Pin::new(&mut conn).graceful_shutdown();
                        // Hyper stops at once only when idle between two messages,
                        // where the stream can be taken back. Otherwise it was still
                        // in an exchange (writing to a client that does not read,
                        // say): it finishes that and closes the connection for real.
                        match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut conn).poll(cx))).await {
                            Poll::Ready(done) => break done,
                            Poll::Pending => activity.unpark(),
                        }
                    }
                }
                Turn::Shutdown => {
                    stopping = true;
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
        };
        done?;
        if !activity.parking() {
            return Ok(None);
        }
        let Some(parts) = conn.into_parts() else { return Ok(None) };
        let watched = parts.io.into_inner();
        unread = join(parts.read_buf, watched.unread);
        if unread.is_empty() {
            return Ok(Some(watched.io));
        }
        // Hyper had read part of the next head: serve it without waiting parked.
        io = watched.io;
    }
}

/// Wait, parked, for the first byte of the next request, at most `wait`, counted
/// in `parked` meanwhile. `None`: the client closed the connection or broke it,
/// the timeout passed, or the server shuts down.
fn first_byte<'a, T>(io: &'a mut T, wait: Duration, parked: &'a Gauge, shutdown: &'a Shutdown) -> FirstByte<'a, T> {
    FirstByte { io, _parked: ParkedGauge::count(parked), shutdown: shutdown.stopped(), idled: tokio::time::sleep(wait) }
}

pin_project_lite::pin_project! {
    /// The parked wait of [`first_byte`]. A future of its own, not an `async`
    /// block, which would keep its arguments, its pins and its poll closure beside
    /// the two timers in every parked connection's task.
    struct FirstByte<'a, T> {
        io: &'a mut T,
        _parked: ParkedGauge<'a>,
        #[pin]
        shutdown: Stopped<'a>,
        #[pin]
        idled: tokio::time::Sleep,
    }
}

impl<T: AsyncRead + Unpin> Future for FirstByte<'_, T> {
    type Output = Option<Bytes>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.project();
        if this.shutdown.poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        // One byte: hyper reads the rest of the request itself.
        let mut byte = 0u8;
        let mut buf = ReadBuf::new(std::slice::from_mut(&mut byte));
        match Pin::new(&mut **this.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == 1 => {
                return Poll::Ready(Some(Bytes::copy_from_slice(&[byte])));
            }
            Poll::Ready(_) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        this.idled.poll(cx).map(|()| None)
    }
}

async fn close<T: AsyncWrite + Unpin>(mut io: T) {
    let _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()).await;
}

/// Whether a message lets the connection serve another request after it, as hyper
/// decides: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `keep-alive`,
/// never an upgrade. Unreadable `Connection` values count as `close`.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    if headers.contains_key(header::UPGRADE) {
        return false;
    }
    let mut keep_alive_token = false;
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { return false };
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("upgrade") {
                return false;
            }
            keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
        }
    }
    version == Version::HTTP_11 || (version == Version::HTTP_10 && keep_alive_token)
}

/// `first` then `then`, in an allocation of their own: `first` is a view into
/// hyper's read buffer, which must not stay alive through `unread`.
fn join(first: Bytes, then: Bytes) -> Bytes {
    if first.is_empty() {
        return then;
    }
    let mut both = BytesMut::with_capacity(first.len() + then.len());
    both.extend_from_slice(&first);
    both.extend_from_slice(&then);
    both.freeze()
}

/// Counts a connection as parked while it lives.
struct ParkedGauge<'a>(&'a Gauge);

impl<'a> ParkedGauge<'a> {
    fn count(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for ParkedGauge<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the parking decision needs to know about one turn of hyper.
#[derive(Default)]
struct Activity {
    /// Requests whose answer has not been sent to its end.
    in_flight: AtomicUsize,
    /// A byte moved since the last look.
    busy: AtomicBool,
    /// A request started in this turn.
    started: AtomicBool,
    /// An exchange of this turn is the connection's last (see [`keeps_alive`]).
    last: AtomicBool,
    /// Hyper was asked to stop for parking: keep the stream open.
    parking: AtomicBool,
}

impl Activity {
    fn moved(&self) {
        self.busy.store(true, Relaxed);
    }

    /// Whether to ask hyper to stop now: a request of this turn has started (a turn
    /// starts inside a request head; a pause before it is a slow head, bounded by
    /// hyper's timeout), none is the connection's last, none is in flight, and no
    /// byte moved since the last look.
    fn may_park(&self) -> bool {
        self.started.load(Relaxed)
            && !self.last.load(Relaxed)
            && !self.busy.swap(false, Relaxed)
            && self.in_flight.load(Relaxed) == 0
    }

    fn last_exchange(&self) {
        self.last.store(true, Relaxed);
    }

    fn park(&self) {
        self.parking.store(true, Relaxed);
    }

    fn unpark(&self) {
        self.parking.store(false, Relaxed);
    }

    fn parking(&self) -> bool {
        self.parking.load(Relaxed)
    }
}

/// One request in flight, from the service call to the end of its answer's body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Relaxed);
        activity.started.store(true, Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// An answer's body, keeping its request counted (`G`, a guard) until hyper drops
/// it.
pub struct Tracked<B, G> {
    pub(crate) body: B,
    pub(crate) _request: G,
}

impl<B: Body + Unpin, G: Unpin> Body for Tracked<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client stream as hyper sees it in one turn: `unread` bytes first, then `io`.
/// It notes every byte moved, and does not close `io` when hyper stops for parking.
struct Watched<T> {
    io: T,
    unread: Bytes,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            this.activity.moved();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.moved();
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.moved();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.moved();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.parking() {
            // Hyper is done with its turn; the stream stays open for the next one.
            return Pin::new(&mut this.io).poll_flush(cx);
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
