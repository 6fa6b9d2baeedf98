//! The server side of a TLS connection, holding no buffer while it is idle.
//!
//! tokio-rustls drives rustls' buffered connection, whose 4 KiB record buffer
//! lives as long as the connection: every idle keep-alive connection kept one.
//! This stream drives rustls' unbuffered API (`UnbufferedServerConnection`)
//! instead and owns the three buffers itself: ciphertext received and not yet
//! processed, plaintext decrypted and not yet read, ciphertext not yet sent. Each
//! is freed once empty when the socket has nothing more to read (an awake
//! HTTP/1.1 connection holds them until it parks: [`TlsStream::hold_buffers`]),
//! so an idle connection holds rustls' session state and keys only.
//!
//! The protocol is rustls' alone: this file moves bytes between the socket and
//! rustls and never builds or checks a record. It reads record headers only as a
//! hint of how much to read next.
//!
//! For hyper it behaves as tokio-rustls does: a read ends (`Ok` with nothing read)
//! at the peer's `close_notify`; a TCP close without one fails it with
//! `UnexpectedEof`, so a forged FIN cannot pass for the end of the data. A write
//! encrypts at most [`MAX_WRITE`](records::MAX_WRITE) bytes and waits until the ciphertext of the
//! previous one is sent, so a client that does not read holds at most one batch.
//! A TLS error sends the alert rustls queued for it, if the socket takes it at
//! once, and is returned as `InvalidData`, as is every later read or write that
//! needs rustls. Plaintext of the records before a bad one is read first, as from
//! rustls' buffered connection; the error comes with the next read.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod records;
use records::{RECORD_OVERHEAD, append, encode_room, encrypt_batch, queue_close_notify, read_plaintext};

/// The least read from the socket at a time.
const READ_SIZE: usize = 4 * 1024;
/// The largest TLS record on the wire: header, 2^14 bytes, TLS 1.2's most expansion.
const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;
/// The most ciphertext held unprocessed: rustls joins a handshake message of up to
/// 64 KiB from several records, all kept in the buffer until it is whole.
const MAX_INCOMING: usize = 0xffff + MAX_RECORD;

/// What rustls waits for once it has processed all it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// More bytes from the peer, to go on with the handshake.
    Handshake,
    /// Nothing: application data may flow both ways.
    Traffic,
    /// Nothing ever again: both sides sent `close_notify`.
    Closed,
}

/// A TLS server stream over `IO`, after its handshake (see [`TlsStream::accept`]).
pub struct TlsStream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Ciphertext received, `incoming[start..]`, that rustls has not consumed
    /// (what it consumed is skipped, then moved out once per read).
    incoming: Vec<u8>,
    start: usize,
    /// Plaintext decrypted and not yet read, `received[taken..]`.
    received: Vec<u8>,
    taken: usize,
    /// Ciphertext to send, `outgoing[sent..]`.
    outgoing: Vec<u8>,
    sent: usize,
    /// The socket reached its end.
    eof: bool,
    /// The peer sent `close_notify`: no application data follows.
    peer_closed: bool,
    /// Our `close_notify` is queued: no application data follows it.
    closing: bool,
    /// Buffers are kept while the peer is waited for (see [`TlsStream::hold_buffers`]).
    hold: bool,
    /// rustls reported this error: it is not called again, and every read and
    /// write fails with it. (rustls does not remember every error itself.) Boxed:
    /// the error is rare and large, and the stream is kept by every connection.
    failed: Option<Box<rustls::Error>>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream<IO> {
    /// Run the server side of the TLS handshake on `io`.
    pub async fn accept(io: IO, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn =
            UnbufferedServerConnection::new(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut tls = Self {
            io,
            conn,
            incoming: Vec::new(),
            start: 0,
            received: Vec::new(),
            taken: 0,
            outgoing: Vec::new(),
            sent: 0,
            eof: false,
            peer_closed: false,
            closing: false,
            hold: false,
            failed: None,
        };
        std::future::poll_fn(|cx| tls.poll_handshake(cx)).await?;
        Ok(tls)
    }

    /// Whether to keep the buffers while the peer is waited for (not by default).
    /// An awake HTTP/1.1 connection holds them between the requests of a busy
    /// client: freeing and allocating them again cost four allocations a request.
    /// Turned off (the empty ones are freed then) when it parks.
    pub fn hold_buffers(&mut self, hold: bool) {
        self.hold = hold;
        if !hold {
            self.release_idle();
        }
    }

    /// The application protocol agreed by ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let next = match self.process(None, &[], false) {
                Ok((next, _)) => next,
                Err(e) => return Poll::Ready(Err(self.fail(cx, e))),
            };
            ready!(self.poll_send(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if next == Next::Closed || self.peer_closed || self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                )));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Let rustls process what was received, until it waits for something.
    /// Plaintext goes to `read` while it has room, then to `received`; `send` is
    /// encrypted (up to [`MAX_WRITE`](records::MAX_WRITE) bytes) once application data may flow, and so
    /// is our `close_notify` if `close`. Returns what rustls waits for and how many
    /// bytes of `send` it took.
    fn process(
        &mut self,
        mut read: Option<&mut ReadBuf<'_>>,
        send: &[IoSlice<'_>],
        close: bool,
    ) -> Result<(Next, usize), rustls::Error> {
        if let Some(error) = &self.failed {
            return Err(rustls::Error::clone(error));
        }
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming[self.start..]);
            let mut discard = status.discard;
            let next = match status.state? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    discard += read_plaintext(&mut traffic, read.as_deref_mut(), &mut self.received)?;
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    match append(&mut self.outgoing, RECORD_OVERHEAD, |out| encode.encode(out), encode_room) {
                        Ok(_) | Err(EncodeError::AlreadyEncoded) => None,
                        Err(e) => return Err(rustls::Error::General(e.to_string())),
                    }
                }
                // What was encoded goes out before the next read (see the callers).
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                ConnectionState::BlockedHandshake => Some((Next::Handshake, 0)),
                ConnectionState::Closed => Some((Next::Closed, 0)),
                ConnectionState::WriteTraffic(mut traffic) => {
                    let taken = if self.closing { 0 } else { encrypt_batch(&mut traffic, send, &mut self.outgoing)? };
                    if close && !self.closing {
                        queue_close_notify(&mut traffic, &mut self.outgoing)?;
                        self.closing = true;
                    }
                    Some((Next::Traffic, taken))
                }
                // Early data is not enabled in keypin's server config.
                _ => return Err(rustls::Error::General("unexpected TLS connection state".into())),
            };
            self.start += discard;
            if self.start == self.incoming.len() {
                self.incoming.clear();
                self.start = 0;
            }
            if let Some(next) = next {
                return Ok(next);
            }
        }
    }

    /// Read more ciphertext from the socket: at least [`READ_SIZE`], or the rest of
    /// the record the buffer ends in.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.start > 0 {
            self.incoming.drain(..self.start);
            self.start = 0;
        }
        let filled = self.incoming.len();
        let want = (filled + READ_SIZE.max(self.record_rest())).min(MAX_INCOMING);
        if want <= filled {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "TLS message too large")));
        }
        // Into the buffer's spare room, which is never zeroed first (a fresh
        // buffer every read after an idle wait would be, 4 KiB a time).
        self.incoming.reserve(want - filled);
        let mut room = bytes::BufMut::limit(&mut self.incoming, want - filled);
        if ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut room))? == 0 {
            self.eof = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Bytes still missing of the record the buffer ends in; 0 if it ends between
    /// records or inside a header. A hint for the size of the next read only: where
    /// rustls joins handshake fragments in place, what follows is no header.
    fn record_rest(&self) -> usize {
        let (mut at, filled) = (self.start, self.incoming.len());
        while at + 5 <= filled {
            let end = at + 5 + usize::from(u16::from_be_bytes([self.incoming[at + 3], self.incoming[at + 4]]));
            if end > filled {
                return end - filled;
            }
            at = end;
        }
        0
    }

    /// Write the ciphertext waiting to be sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Free every buffer that is empty: the connection waits for the peer.
    fn release_idle(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
            self.start = 0;
        }
        if self.received.is_empty() {
            self.received = Vec::new();
        }
        if self.outgoing.is_empty() {
            self.outgoing = Vec::new();
        }
    }

    /// Send the alert rustls queued for `error` if the socket takes it now, once.
    fn fail(&mut self, cx: &mut Context<'_>, error: rustls::Error) -> io::Error {
        if self.failed.is_none() {
            self.failed = Some(Box::new(error.clone()));
            self.drain_alert();
            let _ = self.poll_send(cx);
        }
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    /// Take from rustls what it queued after an error: the alert. While it has
    /// something queued, `process_tls_records` hands that out before it looks at
    /// any input; past that it would parse again, with positions in the input it
    /// kept from the failed call, so the loop stops there.
    fn drain_alert(&mut self) {
        self.incoming.clear();
        self.start = 0;
        while self.conn.wants_write() {
            let Ok(ConnectionState::EncodeTlsData(mut encode)) = self.conn.process_tls_records(&mut []).state else {
                break;
            };
            if append(&mut self.outgoing, RECORD_OVERHEAD, |out| encode.encode(out), encode_room).is_err() {
                break;
            }
        }
    }

    /// Bytes held in buffers now (for tests of [`TlsStream::release_idle`]).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.incoming.capacity() + self.received.capacity() + self.outgoing.capacity()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.taken < this.received.len() {
                let n = (this.received.len() - this.taken).min(buf.remaining());
                buf.put_slice(&this.received[this.taken..this.taken + n]);
                this.taken += n;
                if this.taken == this.received.len() {
                    this.received.clear();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let next = match this.process(Some(&mut *buf), &[], false) {
                Ok((next, _)) => next,
                Err(e) => {
                    let error = this.fail(cx, e);
                    // Plaintext of the records before the bad one is handed over
                    // first, as rustls' buffered connection does; the error (kept
                    // in `failed`) comes with the next read.
                    if buf.filled().len() > before || this.taken < this.received.len() {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Ready(Err(error));
                }
            };
            // What rustls queued while reading (a TLS 1.2 renegotiation refusal; a
            // key update's answer waits for the next write): sent if the socket
            // takes it now, else with the next write or flush, which also report
            // an error sending it. A read must not fail for it after plaintext
            // was handed over.
            let _ = this.poll_send(cx);
            if buf.filled().len() > before || !this.received.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed || next == Next::Closed {
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection without a TLS close_notify",
                )));
            }
            match this.poll_fill(cx) {
                Poll::Pending => {
                    if !this.hold {
                        this.release_idle();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(result) => result?,
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // One batch at a time: the previous one is sent before more is taken.
        ready!(this.poll_send(cx))?;
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        if this.closing {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the TLS connection is closing")));
        }
        let taken = match this.process(None, bufs, false) {
            Ok((Next::Traffic, taken)) => taken,
            Ok(_) => {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "no TLS session to write to")));
            }
            Err(e) => return Poll::Ready(Err(this.fail(cx, e))),
        };
        // Sent now as far as the socket takes it; the rest before the next write.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.closing && this.failed.is_none() {
            if let Err(e) = this.process(None, &[], true) {
                return Poll::Ready(Err(this.fail(cx, e)));
            }
            // Also when rustls had no session to close: nothing more is written.
            this.closing = true;
        }
        ready!(this.poll_send(cx))?;
        // A peer already gone is closed enough (as tokio-rustls has it).
        match ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            done => Poll::Ready(done),
        }
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
