//! A Key Vault test server on 127.0.0.1, faithful to the REST contract the official
//! SDKs speak: HTTPS with a test CA, `GET /secrets/{name}/[{version}]?api-version=…`,
//! the 401 Bearer challenge for requests without a token, Key Vault's JSON bodies
//! and error codes, fault modes (500, hang, 429 + Retry-After, 403 RBAC), secrets
//! added, changed, disabled and deleted at run time, and requests counted per name.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The bearer token the vault accepts.
pub const TOKEN: &str = "test-vault-token-0123456789";
/// The challenge a request without a token gets. The authority is a placeholder:
/// nothing ever connects to it (keypin's static token and the Python check's
/// credential ignore it).
const CHALLENGE: &str = "Bearer authorization=\"https://login.invalid/00000000-0000-0000-0000-000000000000\", resource=\"https://vault.azure.net\"";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// 500 InternalServerError.
    ServerError,
    /// Never answers.
    Hang,
    /// 429 with `Retry-After: 1`.
    Throttle,
    /// 403 Forbidden: the identity lacks "Key Vault Secrets User".
    Rbac,
}

#[derive(Clone, Debug)]
struct StoredSecret {
    value: String,
    enabled: bool,
    not_before: Option<u64>,
    expires: Option<u64>,
    version: String,
}

#[derive(Default)]
struct State {
    secrets: HashMap<String, StoredSecret>,
    gets: HashMap<String, usize>,
    challenges: usize,
    fault: Option<Fault>,
    /// Every request's path, as the vault (and its logs) saw it.
    paths: Vec<String>,
}

#[derive(Clone)]
pub struct TestVault {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the vault's certificate.
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
}

impl TestVault {
    pub async fn start() -> Self {
        let (ca_pem, cert_pem, key_pem) = test_ca_and_leaf();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(keypin::transport::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, state) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(req, &state).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, ca_pem, state }
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.addr.port())
    }

    /// Write the CA certificate into `dir` and return its path.
    pub fn write_ca(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("vault-ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    pub fn set(&self, name: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        let version = format!("{:032x}", rand_version());
        s.secrets.insert(
            name.to_owned(),
            StoredSecret { value: value.to_owned(), enabled: true, not_before: None, expires: None, version },
        );
    }

    /// Change a secret's attributes (disable it, or move its validity window).
    pub fn set_attributes(&self, name: &str, enabled: bool, not_before: Option<u64>, expires: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        let secret = s.secrets.get_mut(name).expect("secret exists");
        secret.enabled = enabled;
        secret.not_before = not_before;
        secret.expires = expires;
    }

    pub fn delete(&self, name: &str) {
        self.state.lock().unwrap().secrets.remove(name);
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().unwrap().fault = Some(fault);
    }

    /// Authorized GETs of secret `name`.
    pub fn gets(&self, name: &str) -> usize {
        self.state.lock().unwrap().gets.get(name).copied().unwrap_or(0)
    }

    /// Every request's path and query so far, as the vault's logs would show them.
    pub fn paths(&self) -> Vec<String> {
        self.state.lock().unwrap().paths.clone()
    }

    /// Requests answered with the 401 challenge.
    pub fn challenges(&self) -> usize {
        self.state.lock().unwrap().challenges
    }
}

fn rand_version() -> u128 {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    u128::from_le_bytes(bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost.
/// A private CA and a leaf certificate for 127.0.0.1 and localhost signed by it:
/// (CA PEM, leaf PEM, leaf key PEM).
pub fn test_ca_and_leaf() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "keypin test vault CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

fn error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response<Full<Bytes>> {
    let mut err = serde_json::json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        err["innererror"] = serde_json::json!({ "code": inner });
    }
    json(status, serde_json::json!({ "error": err }))
}

async fn handle(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    state.lock().unwrap().paths.push(req.uri().to_string());
    let has_api_version = req.uri().query().is_some_and(|q| q.split('&').any(|p| p.starts_with("api-version=")));
    if !has_api_version {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid api-version.",
            None,
        );
    }
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if !authorized {
        state.lock().unwrap().challenges += 1;
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
            None,
        );
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(CHALLENGE));
        return resp;
    }
    // /secrets/{name}/ or /secrets/{name}/{version}
    let mut parts = path.trim_start_matches('/').split('/');
    let (Some("secrets"), Some(name)) = (parts.next(), parts.next()) else {
        return error(StatusCode::NOT_FOUND, "NotFound", "No such operation.", None);
    };
    let version = parts.next().filter(|v| !v.is_empty()).map(str::to_owned);
    if req.method() != Method::GET || parts.next().is_some() {
        return error(StatusCode::METHOD_NOT_ALLOWED, "BadParameter", "Only GET is served here.", None);
    }
    let (fault, secret) = {
        let mut s = state.lock().unwrap();
        *s.gets.entry(name.to_owned()).or_default() += 1;
        (s.fault.unwrap_or(Fault::None), s.secrets.get(name).cloned())
    };
    match fault {
        Fault::None => {}
        Fault::ServerError => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "Something went wrong.", None);
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Fault::Throttle => {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "Request was not processed because too many requests were received.",
                None,
            );
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return resp;
        }
        Fault::Rbac => {
            return error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Caller is not authorized to perform action on resource.",
                Some("ForbiddenByRbac"),
            );
        }
    }
    let Some(secret) = secret.filter(|s| version.as_ref().is_none_or(|v| *v == s.version)) else {
        return error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            &format!("A secret with (name/id) {name} was not found in this key vault."),
            None,
        );
    };
    if !secret.enabled {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            Some("SecretDisabled"),
        );
    }
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_owned();
    let created = now() - 60;
    let mut attributes = serde_json::json!({
        "enabled": true,
        "created": created,
        "updated": created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    });
    if let Some(nbf) = secret.not_before {
        attributes["nbf"] = nbf.into();
    }
    if let Some(exp) = secret.expires {
        attributes["exp"] = exp.into();
    }
    json(
        StatusCode::OK,
        serde_json::json!({
            "value": secret.value,
            "id": format!("https://{host}/secrets/{name}/{}", secret.version),
            "attributes": attributes,
        }),
    )
}
