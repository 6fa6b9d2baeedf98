//! Property tests of keypin's TLS server stream: any bytes from a client, before or
//! after a real handshake, end the connection in bounded time with an error and
//! never a panic; and a real rustls client's handshake and data, handed to the
//! stream in any chunk sizes, yield exactly the plaintext it sent, as rustls'
//! buffered `ServerConnection` yields it from the same chunking.

use std::io::{self, Read as _, Write as _};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;

use crate::proptest_config as config;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::TlsConnector;

use super::tests::server_and_roots;
use super::*;
use crate::transport::tls::provider;

/// Far more than any case needs: reaching it means the stream hangs.
const BOUND: Duration = Duration::from_secs(10);

struct Pki {
    server: Arc<ServerConfig>,
    /// The roots that trust `server`'s certificate.
    roots: Arc<RootCertStore>,
}

/// One certificate for every case (rcgen is slow in a debug build).
static PKI: LazyLock<Pki> = LazyLock::new(|| {
    let (server, roots) = server_and_roots();
    Pki { server: Arc::new(server), roots: Arc::new(roots) }
});

/// A client of one TLS version, sending records of at most `fragment` bytes.
fn client_config(tls12: bool, fragment: Option<usize>) -> Arc<ClientConfig> {
    let version: &'static rustls::SupportedProtocolVersion =
        if tls12 { &rustls::version::TLS12 } else { &rustls::version::TLS13 };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(PKI.roots.clone())
        .with_no_client_auth();
    config.max_fragment_size = fragment;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// Run `future` on a fresh runtime, failing the case if it takes longer than [`BOUND`].
fn bounded<F: Future>(what: &str, future: F) -> Result<F::Output, TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime
        .block_on(async { tokio::time::timeout(BOUND, future).await })
        .map_err(|_| TestCaseError::fail(format!("{what}: hung for {BOUND:?}")))
}

/// Hands the reader at most `sizes[i]` bytes on its `i`-th read (cycling), as a
/// network that splits the stream anywhere would.
struct Chunked {
    io: DuplexStream,
    sizes: Vec<usize>,
    next: usize,
}

impl Chunked {
    fn new(io: DuplexStream, sizes: &[usize]) -> Self {
        Self { io, sizes: sizes.to_vec(), next: 0 }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let k = this.sizes[this.next % this.sizes.len()].clamp(1, buf.remaining().max(1));
        let mut chunk = vec![0u8; k];
        let mut chunk_buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut chunk_buf))?;
        this.next += 1;
        buf.put_slice(chunk_buf.filled());
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chunked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The first flight of a real client: its ClientHello.
fn client_hello(tls12: bool) -> Vec<u8> {
    let mut client = ClientConnection::new(client_config(tls12, None), localhost()).unwrap();
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Hand `bytes` to [`TlsStream::accept`] in chunks of `sizes`, then the end of the
/// input (the client still listens). The handshake's result, and what a read
/// after it gives if it succeeded.
async fn accept_bytes(bytes: &[u8], sizes: &[usize]) -> io::Result<usize> {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    client.write_all(bytes).await.unwrap();
    client.shutdown().await.unwrap();
    let mut stream = TlsStream::accept(Chunked::new(server, sizes), PKI.server.clone()).await?;
    let read = stream.read(&mut [0u8; 1024]).await;
    drop(client);
    read
}

/// A real client's handshake and `writes` (then its `close_notify`) through
/// keypin's stream, which reads the wire in `sizes` chunks into a buffer of
/// `read_size`: the plaintext it read, to its end.
async fn through_keypin(
    client_config: Arc<ClientConfig>,
    writes: &[Vec<u8>],
    sizes: &[usize],
    read_size: usize,
) -> io::Result<Vec<u8>> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let client = async {
        let mut client = TlsConnector::from(client_config).connect(localhost(), client_io).await?;
        for write in writes {
            client.write_all(write).await?;
            client.flush().await?;
        }
        client.shutdown().await?;
        // Kept until the server is done: its tickets and alerts still have a reader.
        io::Result::Ok(client)
    };
    let server = async {
        let mut server = TlsStream::accept(Chunked::new(server_io, sizes), PKI.server.clone()).await?;
        let mut got = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            match server.read(&mut buf).await? {
                0 => return io::Result::Ok(got),
                n => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let (client, server) = tokio::join!(client, server);
    client?;
    server
}

/// The reference: the same client's handshake and `writes` through rustls'
/// buffered `ServerConnection`, fed the wire in `sizes` chunks.
fn through_buffered_rustls(
    client_config: Arc<ClientConfig>,
    writes: &[Vec<u8>],
    sizes: &[usize],
) -> io::Result<Vec<u8>> {
    let mut client = ClientConnection::new(client_config, localhost()).map_err(io::Error::other)?;
    let mut server = ServerConnection::new(PKI.server.clone()).map_err(io::Error::other)?;
    let mut sizes = sizes.iter().cycle();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut data_sent = false;
    for _ in 0..100 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).map_err(io::Error::other)?;
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let k = (*sizes.next().unwrap()).clamp(1, rest.len());
            let mut chunk = &rest[..k];
            rest = &rest[k..];
            while !chunk.is_empty() {
                server.read_tls(&mut chunk).map_err(io::Error::other)?;
                server.process_new_packets().map_err(io::Error::other)?;
                loop {
                    match server.reader().read(&mut buf) {
                        Ok(0) => return Ok(got),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(x) if x.kind() == io::ErrorKind::WouldBlock => break,
                        Err(x) => return Err(x),
                    }
                }
            }
        }
        let mut back = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut back).map_err(io::Error::other)?;
        }
        let mut back = &back[..];
        while !back.is_empty() {
            client.read_tls(&mut back).map_err(io::Error::other)?;
            client.process_new_packets().map_err(io::Error::other)?;
        }
        if !client.is_handshaking() && !data_sent {
            for write in writes {
                client.writer().write_all(write).map_err(io::Error::other)?;
            }
            client.send_close_notify();
            data_sent = true;
        }
    }
    Err(io::Error::other("no close_notify reached the server"))
}

/// Read sizes of a network: single bytes, small pieces, whole flights.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(prop_oneof![1usize..8, 1usize..600, 1usize..40_000], 1..6)
}

fn writes() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(
        prop_oneof![proptest::collection::vec(any::<u8>(), 1..64), proptest::collection::vec(any::<u8>(), 1..6000)],
        0..5,
    )
}

/// Bytes a hostile client might send first: noise, record headers with noise, and a
/// real ClientHello flipped, cut or followed by more.
fn hostile_first_flight() -> impl Strategy<Value = Vec<u8>> {
    let record = (prop_oneof![Just(20u8), Just(21), Just(22), Just(23), Just(24), any::<u8>()], any::<bool>())
        .prop_flat_map(|(kind, big)| {
            let len = if big { 0usize..20_000 } else { 0usize..64 };
            (Just(kind), proptest::collection::vec(any::<u8>(), len), any::<bool>())
        })
        .prop_map(|(kind, body, honest)| {
            let len = if honest { body.len() as u16 } else { body.len().wrapping_mul(7) as u16 };
            let mut bytes = vec![kind, 3, 3];
            bytes.extend(len.to_be_bytes());
            bytes.extend(body);
            bytes
        });
    let records = proptest::collection::vec(record.clone(), 1..4).prop_map(|r| r.concat());
    let mangled_hello = (
        any::<bool>(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        proptest::option::of(any::<usize>()),
        proptest::collection::vec(record, 0..3),
    )
        .prop_map(|(tls12, flips, cut, after)| {
            let mut hello = client_hello(tls12);
            for (at, mask) in flips {
                let at = at % hello.len();
                hello[at] ^= mask;
            }
            if let Some(cut) = cut {
                hello.truncate(cut % (hello.len() + 1));
            }
            hello.extend(after.concat());
            hello
        });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..2000), records, mangled_hello]
}

/// Noise after a handshake: any bytes, and records with any content.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..600), hostile_first_flight()]
}

/// A real handshake, `genuine` application data from the client (read by the
/// server first if `read_first`), then `noise` on the raw socket and its end. What
/// the server read, and how its reads ended.
async fn genuine_then_noise(
    tls12: bool,
    genuine: &[u8],
    noise: &[u8],
    sizes: &[usize],
    read_first: bool,
) -> (Vec<u8>, io::Result<()>) {
    let (client_io, server_io) = tokio::io::duplex(256 * 1024);
    let (client, server) = tokio::join!(
        TlsConnector::from(client_config(tls12, None)).connect(localhost(), client_io),
        TlsStream::accept(Chunked::new(server_io, sizes), PKI.server.clone()),
    );
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let mut got = Vec::new();
    if !genuine.is_empty() {
        client.write_all(genuine).await.unwrap();
        client.flush().await.unwrap();
        if read_first {
            got.resize(genuine.len(), 0);
            server.read_exact(&mut got).await.unwrap();
        }
    }
    client.get_mut().0.write_all(noise).await.unwrap();
    client.get_mut().0.shutdown().await.unwrap();
    let mut buf = [0u8; 512];
    let end = loop {
        match server.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    // However the reads ended, a write and a close are answered, not a panic.
    let _ = server.write_all(b"x").await;
    let _ = server.shutdown().await;
    (got, end)
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn any_first_flight_fails_the_handshake_in_bounded_time(
        bytes in hostile_first_flight(),
        sizes in chunk_sizes(),
    ) {
        let result = bounded("the handshake", accept_bytes(&bytes, &sizes))?;
        let error = match result {
            Ok(n) => return Err(TestCaseError::fail(format!("a handshake and a read of {n} on noise"))),
            Err(error) => error,
        };
        prop_assert!(
            matches!(error.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof),
            "{:?}: {}", error.kind(), error
        );
    }

    #[test]
    fn any_chunking_of_a_real_client_yields_its_plaintext(
        tls12 in any::<bool>(),
        fragment in proptest::option::of(32usize..2000),
        writes in writes(),
        sizes in chunk_sizes(),
        read_size in prop_oneof![1usize..16, 1usize..20_000],
    ) {
        let client = client_config(tls12, fragment);
        let plaintext = writes.concat();
        let keypin = bounded("the connection", through_keypin(client.clone(), &writes, &sizes, read_size))?
            .map_err(|e| TestCaseError::fail(format!("keypin's stream failed: {e}")))?;
        let buffered = through_buffered_rustls(client, &writes, &sizes)
            .map_err(|e| TestCaseError::fail(format!("rustls' buffered connection failed: {e}")))?;
        prop_assert!(buffered == plaintext, "rustls: {} bytes of {}", buffered.len(), plaintext.len());
        prop_assert!(keypin == buffered, "keypin: {} bytes, rustls: {}", keypin.len(), buffered.len());
    }

    #[test]
    fn any_bytes_after_a_handshake_end_the_stream_in_an_error(
        tls12 in any::<bool>(),
        genuine in proptest::collection::vec(any::<u8>(), 0..300),
        noise in noise(),
        sizes in chunk_sizes(),
        read_first in any::<bool>(),
    ) {
        let (got, end) = bounded("the connection", genuine_then_noise(tls12, &genuine, &noise, &sizes, read_first))?;
        prop_assert!(genuine.starts_with(&got), "read {} bytes that the client did not send", got.len());
        if read_first {
            prop_assert!(got == genuine, "read {} bytes, the client sent {}", got.len(), genuine.len());
        }
        prop_assert!(end.is_err(), "bytes without the keys ended the stream cleanly");
    }

    /// As rustls' buffered `ServerConnection` hands out the plaintext of the records
    /// before a bad one after `process_new_packets` failed, the stream returns it
    /// before the error, also when both came in one socket read (found by this
    /// property: a TLS 1.3 client's `b"hello"` record then the byte `0x41`, in one
    /// read, lost `hello`).
    #[test]
    fn any_bytes_after_a_handshake_come_after_all_the_real_data(
        tls12 in any::<bool>(),
        genuine in proptest::collection::vec(any::<u8>(), 1..300),
        noise in noise(),
        sizes in chunk_sizes(),
    ) {
        let (got, end) = bounded("the connection", genuine_then_noise(tls12, &genuine, &noise, &sizes, false))?;
        prop_assert!(got == genuine, "read {} bytes, the client sent {}", got.len(), genuine.len());
        prop_assert!(end.is_err(), "bytes without the keys ended the stream cleanly");
    }
}
