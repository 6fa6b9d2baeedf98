//! Start-up: from a validated `Config` to bound listeners and a running gateway,
//! so `main` and the tests start keypin the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::{Config, SecretBackend};
use crate::gateway::Gateway;
use crate::limits::{self, LimitStore};
use crate::metrics::Metrics;
use crate::secrets::SecretStore;
use crate::secrets::cache::SecretCache;
use crate::secrets::file::FileStore;
use crate::secrets::keyvault::KeyVaultStore;
use crate::server::{self, ListenerSettings};
use crate::tls;

/// How often the secret backend is probed for `/readyz` while it answers…
const PROBE_EVERY: Duration = Duration::from_secs(30);
/// …and while it fails, so readiness comes back soon after the backend does.
const PROBE_EVERY_FAILING: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("session.keys: no session key; set KEYPIN_SESSION_KEYS or session.keys (create one with `keypin gen-key`)")]
    NoSessionKeys,
    #[error("secrets: {0}")]
    Secrets(String),
    #[error("{0}")]
    Limits(String),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        addr: SocketAddr,
        key: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// keypin with its listeners bound, ready to run.
pub struct App {
    config: Config,
    secrets: Arc<SecretCache>,
    limits: Arc<dyn LimitStore>,
    metrics: Arc<Metrics>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    admin: TcpListener,
}

impl App {
    /// Open the configured secret store, prepare TLS (creating a development
    /// certificate if asked) and bind both listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let store: Arc<dyn SecretStore> = match &config.secrets.backend {
            SecretBackend::File { path } => {
                let store = Arc::new(FileStore::load(path).map_err(StartError::Secrets)?);
                store.watch();
                store
            }
            SecretBackend::KeyVault(kv) => {
                Arc::new(KeyVaultStore::new(kv, config.secrets.request_timeout).map_err(StartError::Secrets)?)
            }
        };
        Self::bind_with_store(config, store).await
    }

    /// As [`App::bind`], with a secret store chosen by the caller (the demo, tests).
    pub async fn bind_with_store(config: Config, store: Arc<dyn SecretStore>) -> Result<Self, StartError> {
        if config.session.keys.is_empty() {
            return Err(StartError::NoSessionKeys);
        }
        let limits = limits::store_for(&config.limits).map_err(StartError::Limits)?;
        let metrics = Arc::new(Metrics::new());
        let secrets = Arc::new(SecretCache::new(store, &config.secrets, metrics.clone()));
        // Pay the backend's first-call costs (Key Vault's challenge round trip) now,
        // not on the first login. A failure is logged and shows on /readyz.
        if let Err(e) = secrets.probe().await {
            tracing::warn!(error = %e, "the secret backend did not answer at start-up");
        }
        let s = &config.server;
        if s.self_signed && tls::ensure_self_signed(&s.tls_cert, &s.tls_key)? {
            tracing::warn!(cert = %s.tls_cert.display(), "created a self-signed development certificate");
        }
        let tls = tls::server_config(&s.tls_cert, &s.tls_key)?;
        let bind = |addr: SocketAddr, key: &'static str| async move {
            TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, key, source })
        };
        let listener = bind(s.listen, "server.listen").await?;
        let admin = bind(s.admin_listen, "server.admin_listen").await?;
        Ok(Self { config, secrets, limits, metrics, tls, listener, admin })
    }

    /// The TLS listener's address (its port when configured as 0).
    pub fn local_addr(&self) -> SocketAddr {
        server::local_addr(&self.listener)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        server::local_addr(&self.admin)
    }

    /// Serve until `shutdown` resolves; returns when in-flight work is done.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let gateway =
            Arc::new(Gateway::new(&self.config, self.secrets.clone(), self.limits.clone(), self.metrics.clone()));
        let settings = ListenerSettings {
            header_read_timeout: self.config.server.header_read_timeout,
            max_connections: self.config.server.max_connections,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let admin = Admin { health: self.secrets.health(), metrics: self.metrics.clone(), limits: self.limits.clone() };
        let admin = tokio::spawn(crate::admin::run(self.admin, Arc::new(admin), stopped(stop_rx.clone())));
        let probe = tokio::spawn(probe_backend(self.secrets.clone()));
        let main = server::run(self.listener, self.tls, gateway, settings, self.metrics.clone(), async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        main.await;
        probe.abort();
        let _ = admin.await;
    }
}

/// Keep `/readyz` true to the backend even without login traffic: probe every
/// [`PROBE_EVERY`] while it answers, every [`PROBE_EVERY_FAILING`] while it fails.
async fn probe_backend(secrets: Arc<SecretCache>) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(PROBE_EVERY_FAILING).await;
        if secrets.health().ready().is_err() || last.elapsed() >= PROBE_EVERY {
            let _ = secrets.probe().await;
            last = tokio::time::Instant::now();
        }
    }
}
