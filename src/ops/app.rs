//! Start-up: from a validated `Config` to bound listeners and a running gateway,
//! so `main` and the tests start keypin the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::observe::metrics::Metrics;
use crate::ops::admin::Admin;
use crate::ops::reload::{Hangup, Reloader, hangup_signal};
use crate::state::limits::{self, LimitsError};
use crate::state::secrets::cache::SecretCache;
use crate::state::secrets::{self, OpenError, SecretStore};
use crate::state::session::revocations;
use crate::transport::server::{self, ListenerSettings, Workers};
use crate::transport::tls::{self, CertResolver};
use crate::web::gateway::{Gateway, Shared};

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
    #[error(transparent)]
    Secrets(#[from] OpenError),
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("cannot create the demo's private directory: {0}")]
    DemoDir(std::io::Error),
    #[error("cannot listen on {addr} ({key}): {error}")]
    Bind { addr: SocketAddr, key: &'static str, error: std::io::Error },
}

/// keypin with its listeners bound, ready to run.
pub struct App {
    config: Config,
    /// Where the configuration came from, when it is to be watched and reloaded,
    /// and the SIGHUP handler installed for it.
    watched: Option<(PathBuf, Hangup)>,
    gateway: Arc<ArcSwap<Gateway>>,
    shared: Shared,
    certs: Arc<CertResolver>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    plain: Option<TcpListener>,
    admin: TcpListener,
    workers: Workers,
    reload: Arc<Notify>,
}

impl App {
    /// Open the configured secret store, prepare TLS (creating a development
    /// certificate if asked) and bind both listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let store = secrets::open(&config.secrets)?;
        Self::bind_with_store(config, store).await
    }

    /// As [`App::bind`], with a secret store chosen by the caller (the demo, tests).
    pub async fn bind_with_store(config: Config, store: Arc<dyn SecretStore>) -> Result<Self, StartError> {
        if config.session.keys.is_empty() {
            return Err(StartError::NoSessionKeys);
        }
        let shared = Shared { metrics: Arc::new(Metrics::new()), revoked: revocations() };
        let limits = limits::store_for(&config.limits, shared.metrics.clone(), shared.revoked.clone())?;
        let secrets = Arc::new(SecretCache::new(store, &config.secrets, shared.metrics.clone()));
        // Pay the backend's first-call costs (Key Vault's challenge round trip) now,
        // not on the first login. A failure is logged and shows on /readyz.
        if let Err(e) = secrets.probe().await {
            tracing::warn!(error = %e, "the secret backend did not answer at start-up");
        }
        let s = &config.server;
        if s.self_signed && tls::ensure_self_signed(&s.tls_cert, &s.tls_key)? {
            tracing::warn!(cert = %s.tls_cert.display(), "created a self-signed development certificate");
        }
        let certs = CertResolver::load(&s.tls_cert, &s.tls_key)?;
        let tls = tls::server_config(certs.clone())?;
        let bind = |addr: SocketAddr, key: &'static str| async move {
            TcpListener::bind(addr).await.map_err(|error| StartError::Bind { addr, key, error })
        };
        let listener = bind(s.listen, "server.listen").await?;
        let plain = match s.plain_listen {
            Some(addr) => Some(bind(addr, "server.plain_listen").await?),
            None => None,
        };
        let admin = bind(s.admin_listen, "server.admin_listen").await?;
        let workers = Workers::start(s.worker_count()).map_err(StartError::Workers)?;
        let gateway = Arc::new(ArcSwap::from_pointee(Gateway::new(&config, secrets, limits, &shared)));
        Ok(Self {
            config,
            watched: None,
            gateway,
            shared,
            certs,
            tls,
            listener,
            plain,
            admin,
            workers,
            reload: Arc::default(),
        })
    }

    /// Reload from `path` on SIGHUP and when it (or the certificate) changes.
    /// Installs the SIGHUP handler at once.
    pub fn watch(mut self, path: PathBuf) -> Self {
        self.watched = Some((path, hangup_signal()));
        self
    }

    /// Notify this to reload the watched configuration now.
    pub fn reload_trigger(&self) -> Arc<Notify> {
        self.reload.clone()
    }

    /// The TLS listener's address (its port when configured as 0).
    pub fn local_addr(&self) -> SocketAddr {
        server::local_addr(&self.listener)
    }

    /// The plain HTTP/1.1 listener's address, when one is configured.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().map(server::local_addr)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        server::local_addr(&self.admin)
    }

    /// Serve until `shutdown` resolves; returns when in-flight work is done.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let settings = ListenerSettings {
            header_read_timeout: self.config.server.header_read_timeout,
            keepalive_timeout: self.config.server.keepalive_timeout,
            max_connections: self.config.server.max_connections,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let metrics = self.shared.metrics.clone();
        let admin = Arc::new(Admin { gateway: self.gateway.clone(), metrics: metrics.clone() });
        let admin = tokio::spawn(crate::ops::admin::run(self.admin, admin, stopped(stop_rx.clone())));
        let probe = tokio::spawn(probe_backend(self.gateway.clone(), metrics.clone()));
        let reloader = self.watched.map(|(path, hangup)| {
            let reloader = Reloader {
                path,
                running: self.config,
                gateway: self.gateway.clone(),
                shared: self.shared.clone(),
                certs: self.certs,
                trigger: self.reload,
                hangup,
            };
            tokio::spawn(reloader.run())
        });
        let listeners = server::Listeners { tls: self.listener, plain: self.plain };
        server::run(listeners, self.workers, self.tls, self.gateway, settings, metrics, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
        probe.abort();
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        let _ = admin.await;
    }
}

/// Keep `/readyz` true to the backend even without login traffic: probe every
/// [`PROBE_EVERY`] while it answers, every [`PROBE_EVERY_FAILING`] while it fails.
async fn probe_backend(gateway: Arc<ArcSwap<Gateway>>, metrics: Arc<Metrics>) {
    let mut last = tokio::time::Instant::now();
    let mut tick = crate::transport::upkeep::every(PROBE_EVERY_FAILING);
    loop {
        tick.tick().await;
        let (secrets, limits) = {
            let current = gateway.load();
            (current.secrets().clone(), current.limits().clone())
        };
        // Reports the end of attack mode even when nobody is signing in.
        crate::state::limits::observe_attack_mode(limits.as_ref(), &metrics);
        if secrets.health().ready().is_err() || last.elapsed() >= PROBE_EVERY {
            let _ = secrets.probe().await;
            last = tokio::time::Instant::now();
        }
    }
}
