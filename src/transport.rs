//! Layer 2, bytes and connections: the TLS listener, its worker threads and its
//! shutdown signal, keypin's TLS stream and the lease each connection's stream
//! carries, one client connection (HTTP/1.1 parked while idle, or HTTP/2 closed
//! when no stream is open), the upstream connection pool, the allocator's upkeep,
//! and the grid keypin's periodic upkeep ticks on. Knows nothing of PINs, sessions
//! or routes: the request path reaches it through [`server::Handler`].

pub mod allocator;
pub(crate) mod connection;
pub(crate) mod http2;
pub(crate) mod lease;
pub(crate) mod pool;
pub(crate) mod server;
pub(crate) mod shutdown;
pub mod tls;
pub(crate) mod tls_stream;
pub mod upkeep;
