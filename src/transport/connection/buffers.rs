//! What a connection tells its stream about buffers: hold them while the
//! connection is awake (between the requests of a busy client), let them go
//! while it is parked. Only the TLS stream has any to hold.

use tokio::net::TcpStream;

use crate::transport::tls_stream::TlsStream;

/// A connection's stream, told whether to hold its buffers while it waits for the
/// client: while the connection is awake, not while it is parked.
pub trait HoldsBuffers {
    fn hold_buffers(&mut self, _hold: bool) {}
}

impl<T: HoldsBuffers + ?Sized> HoldsBuffers for Box<T> {
    fn hold_buffers(&mut self, hold: bool) {
        (**self).hold_buffers(hold);
    }
}

impl HoldsBuffers for TcpStream {}

impl HoldsBuffers for TlsStream<TcpStream> {
    fn hold_buffers(&mut self, hold: bool) {
        TlsStream::hold_buffers(self, hold);
    }
}
