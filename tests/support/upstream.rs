//! A test "legacy app" on 127.0.0.1: echoes what it received as JSON, sinks and
//! streams large bodies, stalls, answers slowly, and echoes WebSocket messages.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Size of each chunk the upstream streams.
const CHUNK: usize = 64 * 1024;

pub struct Upstream {
    pub addr: SocketAddr,
}

impl Upstream {
    pub async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, peer));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same app over TLS, with a certificate of a private CA; the CA's PEM.
    pub async fn spawn_tls() -> (Self, String) {
        use rustls::pki_types::pem::PemObject as _;
        let (ca, cert, key) = super::vault::test_ca_and_leaf();
        let chain =
            rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(keypin::transport::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(move |req| handle(req, peer));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        (Self { addr }, ca)
    }

    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).map_err(|never| match never {}).boxed()
}

async fn handle(mut req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = if path == "/sink" {
        // Count the body without keeping it.
        let mut body = req.into_body();
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                total += data.len() as u64;
            }
        }
        Response::new(full(format!("{{\"bytes\":{total}}}")))
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let mut left: u64 = n.parse().unwrap();
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let stream = futures_util::stream::poll_fn(move |_| {
            if left == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = left.min(CHUNK as u64) as usize;
            left -= n as u64;
            std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n)))))
        });
        Response::new(BodyExt::boxed(StreamBody::new(stream)))
    } else if path == "/early" {
        // Answer at once, then read the upload to its end (as nginx does): the
        // connection stays open and busy with it after the answer.
        let mut body = req.into_body();
        tokio::spawn(async move { while body.frame().await.is_some_and(|f| f.is_ok()) {} });
        Response::new(full("early"))
    } else if path == "/stall" {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Response::new(full("too late"))
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        Response::new(full("slow done"))
    } else if path == "/ws" {
        let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let io = TokioIo::new(upgrade.await.unwrap());
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    ws.send(msg).await.unwrap();
                }
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key))
            .body(full(""))
            .unwrap()
    } else {
        echo(&req, peer)
    };
    Ok(resp)
}

/// The request as the upstream saw it.
fn echo(req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let json = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "version": format!("{:?}", req.version()),
        "peer": peer.to_string(),
        "headers": headers,
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("connection", "x-upstream-hop")
        .header("x-upstream-hop", "must not reach the client")
        .body(full(json.to_string()))
        .unwrap()
}

/// What the echo endpoint reported.
#[derive(Debug)]
pub struct Seen(pub serde_json::Value);

impl Seen {
    pub fn parse(body: &[u8]) -> Self {
        Self(serde_json::from_slice(body).expect("echo JSON"))
    }

    /// Every value of header `name` (lower case), in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn one(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} seen {} times: {all:?}", all.len());
        all.into_iter().next()
    }

    pub fn names(&self) -> Vec<String> {
        self.0["headers"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap().to_owned()).collect()
    }

    pub fn uri(&self) -> &str {
        self.0["uri"].as_str().unwrap()
    }
}
