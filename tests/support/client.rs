//! TLS clients that trust the gateway's development certificate: hyper-util clients
//! pinned to HTTP/1.1 or HTTP/2, and raw TLS streams for malformed input.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub type Body = BoxBody<Bytes, std::io::Error>;
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Body>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// A rustls client config trusting the PEM certificate at `cert`.
pub fn tls_config(cert: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(keypin::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A pooled client speaking only `proto`, trusting `cert`.
pub fn https_client(cert: &Path, proto: Proto) -> HttpsClient {
    https_client_from(cert, proto, None)
}

/// As `https_client`, connecting from the loopback address `local` (127.0.0.2,
/// …): a second client address on one machine.
pub fn https_client_from(cert: &Path, proto: Proto, local: Option<std::net::IpAddr>) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_local_address(local);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config(cert, &[])).https_only();
    let connector = match proto {
        Proto::H1 => builder.enable_http1().wrap_connector(http),
        Proto::H2 => builder.enable_http2().wrap_connector(http),
    };
    let mut client = Client::builder(TokioExecutor::new());
    client.http2_only(proto == Proto::H2);
    client.build(connector)
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn bytes(data: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(data.into()).map_err(|never| match never {}).boxed()
}

/// A plain HTTP/1.1 exchange (`Connection: close`) with `addr`: status, head and
/// body as text.
pub async fn plain_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    plain_exchange_with(addr, method, path, headers, "").await
}

/// As `plain_exchange`, sending `body` (with its `Content-Length`).
pub async fn plain_exchange_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str("Host: keypin\r\n");
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head[9..12].parse().unwrap(), head.to_owned(), body.to_owned())
}

/// Send and collect the whole answer.
pub async fn send(client: &HttpsClient, req: Request<Body>) -> (Response<()>, Bytes) {
    let resp = client.request(req).await.expect("request reaches the gateway");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body arrives").to_bytes();
    (Response::from_parts(parts, ()), body)
}

/// A raw TLS connection (ALPN http/1.1) for hand-written requests.
pub async fn raw_tls(addr: std::net::SocketAddr, cert: &Path) -> TlsStream<TcpStream> {
    let connector = TlsConnector::from(Arc::new(tls_config(cert, &[b"http/1.1"])));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}
