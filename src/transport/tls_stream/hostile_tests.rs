//! The TLS stream against hostile input: mangled and hostile handshakes, hostile
//! records after the handshake, and a handshake read one byte at a time. Every case
//! ends in an error or success, never a panic or a hang.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

use super::TlsStream;
use super::tests::{Pki, pair, pattern, pki};

/// The first flight of a real TLS 1.3 client: its ClientHello record.
async fn client_hello(pki: &Pki) -> Vec<u8> {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let connector = TlsConnector::from(pki.client.clone());
    let connecting = tokio::spawn(async move {
        let _ = connector.connect(ServerName::try_from("localhost").unwrap(), client).await;
    });
    let mut hello = vec![0u8; 5];
    server.read_exact(&mut hello).await.unwrap();
    let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    hello.resize(5 + len, 0);
    server.read_exact(&mut hello[5..]).await.unwrap();
    connecting.abort();
    hello
}

/// The handshake on `bytes` and then the end of the input: an error or success,
/// never a panic.
async fn accept_bytes(pki: &Pki, bytes: &[u8]) -> io::Result<()> {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    client.write_all(bytes).await.unwrap();
    drop(client);
    TlsStream::accept(server, pki.server.clone()).await.map(drop)
}

#[tokio::test]
async fn hostile_handshake_bytes_fail_cleanly() {
    let pki = pki(&[&rustls::version::TLS13]);
    let hello = client_hello(&pki).await;
    let cases: [(&str, Vec<u8>); 4] = [
        ("a handshake message longer than 64 KiB", vec![0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
        ("a partial handshake message, then an alert", vec![0x16, 3, 1, 0, 1, 1, 0x15, 3, 1, 0, 2, 2, 40]),
        ("a partial handshake message, then no record", vec![0x16, 3, 1, 0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ("a ClientHello with bytes of another message after it", {
            let mut bytes = hello.clone();
            let len = u16::from_be_bytes([bytes[3], bytes[4]]) + 4;
            bytes[3..5].copy_from_slice(&len.to_be_bytes());
            bytes.extend([2, 0, 0, 9]);
            bytes
        }),
    ];
    for (what, bytes) in cases {
        let error = accept_bytes(&pki, &bytes).await.expect_err(what);
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{what}: {error}");
    }
}

/// A fixed pseudo-random sequence (xorshift64) from `seed`.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Append one to three records of any content type, each with up to `max_len`
/// random bytes.
fn random_records(next: &mut impl FnMut() -> u64, bytes: &mut Vec<u8>, max_len: u64) {
    for _ in 0..1 + next() % 3 {
        let kind = [20, 21, 22, 23, 24][(next() % 5) as usize];
        let len = (next() % max_len) as u16;
        bytes.extend([kind, 3, 3]);
        bytes.extend(len.to_be_bytes());
        bytes.extend((0..len).map(|_| next() as u8));
    }
}

#[tokio::test]
async fn mangled_client_hellos_never_panic() {
    let pki = pki(&[&rustls::version::TLS13]);
    let hello = client_hello(&pki).await;
    assert!(accept_bytes(&pki, &hello).await.is_err(), "a ClientHello alone is no handshake");
    // The same 600 cases on every run.
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for case in 0..600 {
        let mut bytes = hello.clone();
        match case % 3 {
            // Flip a few bytes.
            0 => {
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] ^= 1 << (next() % 8);
                }
            }
            // Cut it short.
            1 => bytes.truncate((next() as usize) % bytes.len()),
            // Add records of any kind after it.
            _ => random_records(&mut next, &mut bytes, 64),
        }
        // The assertion is that this returns at all: a panic fails the test.
        let _ = accept_bytes(&pki, &bytes).await;
    }
}

/// Hands the reader at most one byte per read.
struct Trickle(DuplexStream);

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut byte = [0u8; 1];
        let mut one = tokio::io::ReadBuf::new(&mut byte);
        let polled = Pin::new(&mut self.0).poll_read(cx, &mut one);
        buf.put_slice(one.filled());
        polled
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_handshake_in_small_records_read_a_byte_at_a_time_completes() {
    let pki = pki(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    let mut client = (*pki.client).clone();
    client.max_fragment_size = Some(64);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let connector = TlsConnector::from(Arc::new(client));
    let (client, server) = tokio::join!(
        connector.connect(ServerName::try_from("localhost").unwrap(), client_io),
        TlsStream::accept(Trickle(server_io), pki.server.clone()),
    );
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let data = pattern(5_000);
    client.write_all(&data).await.unwrap();
    client.flush().await.unwrap();
    let mut got = vec![0u8; data.len()];
    server.read_exact(&mut got).await.unwrap();
    assert!(got == data, "the data differs");
}

#[tokio::test]
async fn hostile_records_after_the_handshake_never_panic() {
    let pki = pki(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for _ in 0..100 {
        let (mut client, mut server) = pair(&pki, 256 * 1024).await;
        let mut bytes = Vec::new();
        random_records(&mut next, &mut bytes, 300);
        client.get_mut().0.write_all(&bytes).await.unwrap();
        client.get_mut().0.shutdown().await.unwrap();
        let mut buf = [0u8; 512];
        // Ends in an error at the latest at the end of the input; never panics.
        assert!(server.read(&mut buf).await.is_err() || server.read(&mut buf).await.is_err());
        assert!(server.write_all(b"x").await.is_err() || server.shutdown().await.is_ok());
    }
}
