//! TLS set-up: PEM files to a rustls `ServerConfig` (ALPN h2 + http/1.1) whose
//! certificate can be swapped while serving, the one crypto provider of the binary
//! (ring), and the development self-signed certificate.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// ALPN protocols offered to clients, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Names the development certificate is valid for.
const DEV_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("creating the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The crypto provider used everywhere in keypin (server, upstream client, Key Vault).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process-wide default too, for libraries that build their own
/// rustls configs. Idempotent.
pub fn install_default_provider() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificate every new handshake gets; [`CertResolver::reload`] swaps it
/// without touching connections already established.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self { current: ArcSwap::from_pointee(load_certified_key(cert, key)?) }))
    }

    /// Replace the certificate; on error the current one stays.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        self.current.store(Arc::new(load_certified_key(cert, key)?));
        Ok(())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Read a PEM chain and key and check that they belong together.
fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let file_err = |path: &Path, reason: String| TlsError::File { path: path.to_owned(), reason };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_err(cert, format!("cannot read a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(file_err(cert, "holds no PEM certificate".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, format!("cannot read a PEM private key: {e}")))?;
    Ok(CertifiedKey::from_der(chain, key_der, &provider())?)
}

/// The server configuration: TLS 1.2/1.3, ALPN, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Create a self-signed development certificate at `cert`/`key` unless both exist.
/// The key file is written with mode 0600. Returns whether files were created.
pub fn ensure_self_signed(cert: &Path, key: &Path) -> Result<bool, TlsError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let names: Vec<String> = DEV_CERT_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let generated = rcgen::generate_simple_self_signed(names)?;
    for path in [cert, key] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
    }
    write_private(key, generated.signing_key.serialize_pem().as_bytes()).map_err(io_err(key))?;
    std::fs::write(cert, generated.cert.pem()).map_err(io_err(cert))?;
    Ok(true)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |e| TlsError::File { path: path.to_owned(), reason: e.to_string() }
}

/// Write a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_loads_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c/cert.pem"), dir.path().join("c/key.pem"));
        assert!(ensure_self_signed(&cert, &key).unwrap());
        assert!(!ensure_self_signed(&cert, &key).unwrap(), "existing files are kept");
        let config = server_config(CertResolver::load(&cert, &key).unwrap()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_mismatched_key_is_refused_and_the_current_certificate_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (a_cert, a_key) = (dir.path().join("a.pem"), dir.path().join("a-key.pem"));
        let (b_cert, b_key) = (dir.path().join("b.pem"), dir.path().join("b-key.pem"));
        ensure_self_signed(&a_cert, &a_key).unwrap();
        ensure_self_signed(&b_cert, &b_key).unwrap();
        let resolver = CertResolver::load(&a_cert, &a_key).unwrap();
        let before = resolver.current.load_full();
        assert!(resolver.reload(&a_cert, &b_key).is_err());
        assert!(Arc::ptr_eq(&before, &resolver.current.load_full()));
        resolver.reload(&b_cert, &b_key).unwrap();
        assert!(!Arc::ptr_eq(&before, &resolver.current.load_full()));
    }

    #[test]
    fn unreadable_files_are_named() {
        let e = CertResolver::load(Path::new("/nonexistent/c.pem"), Path::new("/nonexistent/k.pem")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/c.pem"), "{e}");
    }
}
