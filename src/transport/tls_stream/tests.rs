//! The TLS stream against tokio-rustls' client over an in-memory pipe: data both
//! ways in any chunking, the ends of a connection, hostile bytes, key updates,
//! TLS 1.2, resumption, and the buffers an idle or stalled stream holds.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream as ClientStream;

use super::TlsStream;
use super::records::{MAX_WRITE, RECORD_OVERHEAD};
use crate::transport::tls::provider;

pub(super) struct Pki {
    pub(super) server: Arc<ServerConfig>,
    pub(super) client: Arc<ClientConfig>,
}

/// A server config for a new self-signed `localhost` certificate (ALPN h2 and
/// http/1.1), and the roots that trust it.
pub(super) fn server_and_roots() -> (ServerConfig, RootCertStore) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(generated.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    (server, roots)
}

pub(super) fn pki(versions: &[&'static rustls::SupportedProtocolVersion]) -> Pki {
    let (server, roots) = server_and_roots();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    Pki { server: Arc::new(server), client: Arc::new(client) }
}

/// A handshaken pair over a pipe holding `pipe` bytes each way.
pub(super) async fn pair(pki: &Pki, pipe: usize) -> (ClientStream<DuplexStream>, TlsStream<DuplexStream>) {
    let (client, server) = tokio::io::duplex(pipe);
    let connector = TlsConnector::from(pki.client.clone());
    let (client, server) = tokio::join!(
        connector.connect(ServerName::try_from("localhost").unwrap(), client),
        TlsStream::accept(server, pki.server.clone()),
    );
    (client.unwrap(), server.unwrap())
}

pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Poll `stream` for a read once, without waiting.
fn read_once<T: AsyncRead + Unpin>(stream: &mut T, buf: &mut [u8]) -> Poll<io::Result<usize>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut buf = tokio::io::ReadBuf::new(buf);
    Pin::new(stream).poll_read(&mut cx, &mut buf).map_ok(|()| buf.filled().len())
}

#[tokio::test]
async fn the_handshake_agrees_alpn_and_data_flows_both_ways() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));

    client.write_all(b"hello").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");

    server.write_all(b"world").await.unwrap();
    server.flush().await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"world");
}

#[tokio::test]
async fn a_megabyte_each_way_through_a_small_pipe_arrives_intact() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (client, mut server) = pair(&pki, 1000).await;
    let data = pattern(1 << 20);

    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 7777];
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            server.write_all(&buf[..n]).await.unwrap();
        }
        server.shutdown().await.unwrap();
    });
    let (mut read, mut write) = tokio::io::split(client);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(30_000) {
            write.write_all(chunk).await.unwrap();
        }
        write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    read.read_to_end(&mut echoed).await.unwrap();
    writer.await.unwrap();
    echo.await.unwrap();
    assert!(echoed == data, "echo differs: {} bytes of {}", echoed.len(), data.len());
}

#[tokio::test]
async fn one_byte_reads_get_every_byte_in_order() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    let data = pattern(40_000);
    client.write_all(&data).await.unwrap();
    client.shutdown().await.unwrap();

    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while server.read(&mut byte).await.unwrap() == 1 {
        got.push(byte[0]);
    }
    assert!(got == data, "got {} bytes of {}", got.len(), data.len());
}

#[tokio::test]
async fn writes_of_several_slices_arrive_in_order() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 256 * 1024).await;
    let big = pattern(100_000);
    let frame = pattern(16 * 1024);
    // Joined into records of up to 16 KiB, in order, up to MAX_WRITE per write: an
    // HTTP/1 head and body, HTTP/2 frame headers with their payloads.
    for slices in [
        vec![&b"head "[..], &b"body"[..]],
        vec![&b"head "[..], &big[..]],
        vec![&b"123456789"[..], &frame[..], &b"987654321"[..], &big[..100]],
    ] {
        let io: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let taken = server.write_vectored(&io).await.unwrap();
        assert!(taken > 0 && taken <= total.min(MAX_WRITE));
        server.flush().await.unwrap();
        let mut got = vec![0u8; taken];
        client.read_exact(&mut got).await.unwrap();
        assert!(got == slices.concat()[..taken], "slices arrived out of order");
    }
}

#[tokio::test]
async fn a_write_fits_its_buffer_in_32_kib() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (frame, big) = (pattern(16 * 1024), pattern(100_000));
    for slices in [
        vec![&b"123456789"[..], &frame[..], &b"987654321"[..], &big[..100]],
        vec![&b"1"[..], &big[..20_000], &b"2"[..], &big[..20_000]],
        vec![&big[..]],
    ] {
        let (_client, mut server) = pair(&pki, 256 * 1024).await;
        let io: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
        let taken = server.write_vectored(&io).await.unwrap();
        assert!(taken > 0 && taken <= MAX_WRITE);
        assert!(server.outgoing.capacity() <= 32 * 1024, "the buffer grew to {}", server.outgoing.capacity());
    }
}

#[tokio::test]
async fn close_notify_ends_reads_each_way() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    client.shutdown().await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(server.read(&mut buf).await.unwrap(), 0);

    server.write_all(b"after").await.unwrap();
    server.shutdown().await.unwrap();
    client.read_exact(&mut buf[..5]).await.unwrap();
    assert_eq!(&buf[..5], b"after");
    // tokio-rustls' client ends cleanly only on a close_notify.
    assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    assert!(server.write_all(b"late").await.is_err(), "a write after shutdown must fail");
}

#[tokio::test]
async fn a_tcp_close_without_close_notify_fails_reads() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    client.write_all(b"whole").await.unwrap();
    client.flush().await.unwrap();
    client.get_mut().0.shutdown().await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(server.read(&mut buf).await.unwrap(), 5);
    assert_eq!(server.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);

    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    // A record header that promises 100 bytes, and 3 of them.
    client.get_mut().0.write_all(&[23, 3, 3, 0, 100, 1, 2, 3]).await.unwrap();
    client.get_mut().0.shutdown().await.unwrap();
    assert_eq!(server.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn plaintext_before_a_bad_record_in_the_same_read_comes_before_the_error() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    client.write_all(b"hello").await.unwrap();
    client.flush().await.unwrap();
    client.get_mut().0.write_all(&[0x41]).await.unwrap(); // no content type
    let mut buf = [0u8; 16];
    let n = server.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(server.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn a_forged_record_fails_the_read_and_the_client_gets_an_alert() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    let mut forged = vec![23, 3, 3, 0, 40];
    forged.extend(pattern(40));
    client.get_mut().0.write_all(&forged).await.unwrap();
    let mut buf = [0u8; 16];
    let error = server.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);

    let alert = client.read(&mut buf).await.unwrap_err();
    assert!(alert.to_string().contains("BadRecordMac"), "client saw: {alert}");
    // The connection stays failed.
    assert!(server.read(&mut buf).await.is_err());
}

#[tokio::test]
async fn an_oversized_record_is_refused_at_its_header() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    client.get_mut().0.write_all(&[23, 3, 3, 0xff, 0xff, 0, 0, 0]).await.unwrap();
    let mut buf = [0u8; 16];
    let error = server.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(server.buffered() < 32 * 1024, "held {} bytes for a refused record", server.buffered());
}

#[tokio::test]
async fn bytes_that_are_not_tls_fail_the_handshake() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let error = TlsStream::accept(server, pki.server.clone()).await.err().expect("the handshake must fail");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);

    // A client that leaves mid-handshake.
    let (client, server) = tokio::io::duplex(64 * 1024);
    drop(client);
    let error = TlsStream::accept(server, pki.server.clone()).await.err().expect("the handshake must fail");
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn a_key_update_from_the_client_is_followed() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    for round in 0..3u8 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(&[round; 100]).await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 100];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [round; 100]);
        server.write_all(&[round + 10; 100]).await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [round + 10; 100]);
    }
}

#[tokio::test]
async fn a_tls12_client_is_served() {
    let pki = pki(&[&rustls::version::TLS12]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    assert_eq!(client.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    client.write_all(b"twelve").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 6];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"twelve");
}

#[tokio::test]
async fn a_second_connection_resumes_with_a_ticket_sent_after_the_handshake() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    assert_eq!(client.get_ref().1.handshake_kind(), Some(HandshakeKind::Full));
    server.write_all(b"x").await.unwrap();
    server.flush().await.unwrap();
    // The client takes in the tickets that came before this byte.
    let mut buf = [0u8; 1];
    client.read_exact(&mut buf).await.unwrap();

    let (client, _server) = pair(&pki, 64 * 1024).await;
    assert_eq!(client.get_ref().1.handshake_kind(), Some(HandshakeKind::Resumed));
}

#[tokio::test]
async fn an_idle_stream_holds_no_buffer() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    for _ in 0..2 {
        client.write_all(&pattern(30_000)).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0u8; 30_000];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(&pattern(50_000)).await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut vec![0u8; 50_000]).await.unwrap();

        assert!(read_once(&mut server, &mut [0u8; 64]).is_pending());
        assert_eq!(server.buffered(), 0);
    }
}

#[tokio::test]
async fn held_buffers_stay_through_waits_until_let_go() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (mut client, mut server) = pair(&pki, 64 * 1024).await;
    server.hold_buffers(true);
    for _ in 0..2 {
        client.write_all(&pattern(3_000)).await.unwrap();
        client.flush().await.unwrap();
        server.read_exact(&mut vec![0u8; 3_000]).await.unwrap();
        server.write_all(&pattern(5_000)).await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut vec![0u8; 5_000]).await.unwrap();

        assert!(read_once(&mut server, &mut [0u8; 64]).is_pending());
        assert!(read_once(&mut server, &mut [0u8; 64]).is_pending());
        assert!(server.buffered() > 0, "held between two requests");
    }
    server.hold_buffers(false);
    assert_eq!(server.buffered(), 0, "let go: the empty buffers are freed at once");
    assert!(read_once(&mut server, &mut [0u8; 64]).is_pending());
    assert_eq!(server.buffered(), 0, "and after each wait");
}

#[test]
fn a_stream_fits_the_allocators_1280_byte_class() {
    // Every parked connection keeps one, boxed: jemalloc's next class up is 1,536
    // bytes, 2.4 MiB more at 10,000 connections (docs/benchmarks.md, Memory).
    assert!(size_of::<TlsStream<tokio::net::TcpStream>>() <= 1280);
}

#[tokio::test]
async fn a_client_that_does_not_read_holds_one_batch() {
    let pki = pki(&[&rustls::version::TLS13]);
    let (_client, mut server) = pair(&pki, 4096).await;
    let data = pattern(1 << 20);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut written = 0;
    while let Poll::Ready(n) = Pin::new(&mut server).poll_write(&mut cx, &data[written..]) {
        written += n.unwrap();
        assert!(written < data.len(), "a client that does not read took everything");
    }
    assert!(written <= 2 * MAX_WRITE, "took {written} bytes");
    let bound = 2 * (MAX_WRITE + 8 * RECORD_OVERHEAD);
    assert!(server.buffered() <= bound, "holds {} bytes, more than {bound}", server.buffered());
    // Flushing waits for the client too.
    assert!(poll_fn(|cx| Poll::Ready(Pin::new(&mut server).poll_flush(cx))).await.is_pending());
}

#[tokio::test]
async fn a_failed_handshake_sends_the_client_its_alert() {
    let pki = pki(&[&rustls::version::TLS13]);
    let mut client = (*pki.client).clone();
    client.alpn_protocols = vec![b"gopher".to_vec()];
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let connector = TlsConnector::from(Arc::new(client));
    let (client, server) = tokio::join!(
        connector.connect(ServerName::try_from("localhost").unwrap(), client_io),
        TlsStream::accept(server_io, pki.server.clone()),
    );
    assert_eq!(server.err().expect("no protocol in common").kind(), io::ErrorKind::InvalidData);
    let alert = client.expect_err("the client must fail too");
    assert!(alert.to_string().contains("NoApplicationProtocol"), "client saw: {alert}");
}
