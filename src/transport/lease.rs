//! What a client connection holds while it lives, carried inside its stream.
//!
//! A connection holds its slot of `max_connections` (the shutdown waits for every
//! slot to come back) and its count in `keypin_open_connections`: a [`Lease`]. It
//! lives in the connection's boxed stream ([`Leased`]), so it goes wherever the
//! stream goes (to a WebSocket relay after an upgrade, too) and ends with it,
//! without an allocation of its own: the lease fits in the end of the TLS stream's
//! allocator class (`a_leased_stream_fits_the_allocators_1280_byte_class`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use crate::observe::metrics::Metrics;
use crate::transport::connection::HoldsBuffers;

/// A client connection's slot and count (see the module's doc).
pub struct Lease {
    _slot: OwnedSemaphorePermit,
    open: OpenConnection,
}

impl Lease {
    /// Count a connection in `keypin_open_connections` until the lease ends.
    pub fn new(slot: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Self {
        metrics.open_connections.inc();
        Self { _slot: slot, open: OpenConnection(metrics) }
    }

    /// The connection's TLS handshake failed or timed out.
    pub fn handshake_failed(&self) {
        self.open.0.tls_handshake_failures.inc();
    }
}

/// Counts a connection in `keypin_open_connections` while it lives; its metrics.
struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}

/// A connection's stream with its lease.
pub struct Leased<S> {
    stream: S,
    _lease: Lease,
}

impl<S> Leased<S> {
    pub fn new(stream: S, lease: Lease) -> Self {
        Self { stream, _lease: lease }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S: HoldsBuffers> HoldsBuffers for Leased<S> {
    fn hold_buffers(&mut self, hold: bool) {
        self.stream.hold_buffers(hold);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Leased<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Leased<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::Leased;
    use crate::transport::tls_stream::TlsStream;

    #[test]
    fn a_leased_stream_fits_the_allocators_1280_byte_class() {
        // Every parked connection keeps one, boxed: jemalloc's next class up is
        // 1,536 bytes, 2.4 MiB more at 10,000 connections (docs/benchmarks.md,
        // Memory).
        assert!(size_of::<Leased<TlsStream<tokio::net::TcpStream>>>() <= 1280);
    }
}
