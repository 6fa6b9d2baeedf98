//! Live reconfiguration: on SIGHUP, when the configuration or certificate files
//! change, or on request, the new configuration is parsed and validated off the hot
//! path and a new `Gateway` is swapped in atomically. An invalid file is refused and
//! the running configuration stays. Limiter state, revocations, metrics, the secret
//! store (when its settings are unchanged) and connections carry over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::{Config, SecretsConfig, Stamp, stamp};
use crate::state::secrets::cache::SecretCache;
use crate::state::secrets::{self, OpenError};
use crate::transport::tls::CertResolver;
use crate::transport::upkeep;
use crate::web::gateway::{Gateway, Shared};

/// How often the configuration and certificate files are checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

pub struct Reloader {
    pub path: PathBuf,
    pub running: Config,
    pub gateway: Arc<ArcSwap<Gateway>>,
    pub shared: Shared,
    pub certs: Arc<CertResolver>,
    /// Reload now (tests, and whatever else wants one without a signal).
    pub trigger: Arc<Notify>,
    /// SIGHUP, installed before keypin says it is listening: a signal sent right
    /// after start-up must reload, not kill (SIGHUP's default action).
    pub hangup: Hangup,
}

impl Reloader {
    fn stamps(&self) -> [Option<Stamp>; 3] {
        let s = &self.running.server;
        [stamp(&self.path), stamp(&s.tls_cert), stamp(&s.tls_key)]
    }

    /// Watch for reasons to reload until the task is dropped.
    pub async fn run(mut self) {
        let mut stamps = self.stamps();
        let mut tick = upkeep::every(WATCH_EVERY);
        loop {
            let forced = tokio::select! {
                () = self.trigger.notified() => true,
                () = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    true
                }
                _ = tick.tick() => false,
            };
            let now = self.stamps();
            if forced || now != stamps {
                self.reload();
                stamps = self.stamps();
            }
        }
    }

    /// Load, validate and swap in the configuration file, then the certificate.
    pub fn reload(&mut self) {
        let next = match Config::load(&self.path) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded; the running one stays");
                return;
            }
        };
        if next.session.keys.is_empty() {
            tracing::error!("configuration not reloaded: it has no session key; the running one stays");
            return;
        }
        for key in needs_restart(&self.running, &next) {
            tracing::warn!(key, "changed in the configuration file; takes effect at the next restart");
        }
        let current = self.gateway.load_full();
        let secrets = match reuse_or_open(current.secrets(), &self.running.secrets, &next.secrets, &self.shared) {
            Ok(secrets) => secrets,
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded; the running one stays");
                return;
            }
        };
        let limits = current.limits().reconfigure(&next.limits);
        if let Err(e) = self.certs.reload(&next.server.tls_cert, &next.server.tls_key) {
            tracing::error!(error = %e, "certificate not reloaded; the current one stays");
        }
        self.gateway.store(Arc::new(Gateway::new(&next, secrets, limits, &self.shared)));
        tracing::info!(file = %self.path.display(), routes = next.routes.len(), "configuration reloaded");
        self.running = next;
    }
}

/// The secret cache for the new configuration: the running one when nothing
/// changed, a new cache on the same store when only cache settings changed, a new
/// store when the backend changed.
fn reuse_or_open(
    current: &Arc<SecretCache>,
    running: &SecretsConfig,
    next: &SecretsConfig,
    shared: &Shared,
) -> Result<Arc<SecretCache>, OpenError> {
    if running == next {
        return Ok(current.clone());
    }
    let store = if running.backend == next.backend { current.store().clone() } else { secrets::open(next)? };
    Ok(Arc::new(SecretCache::new(store, next, shared.metrics.clone())))
}

/// Settings that are bound at start-up.
fn needs_restart(running: &Config, next: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.server, &next.server);
    let mut keys = Vec::new();
    if a.listen != b.listen {
        keys.push("server.listen");
    }
    if a.admin_listen != b.admin_listen {
        keys.push("server.admin_listen");
    }
    if a.header_read_timeout != b.header_read_timeout {
        keys.push("server.header_read_timeout");
    }
    if a.keepalive_timeout != b.keepalive_timeout {
        keys.push("server.keepalive_timeout");
    }
    if a.max_connections != b.max_connections {
        keys.push("server.max_connections");
    }
    if a.workers != b.workers {
        keys.push("server.workers");
    }
    if running.limits.store != next.limits.store {
        keys.push("limits.store");
    }
    keys
}

/// SIGHUP as a stream of `()`; never fires where there are no signals.
pub struct Hangup(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl Hangup {
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.0.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Install the SIGHUP handler now (needs a Tokio runtime).
pub fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Hangup(signal(SignalKind::hangup()).ok())
    }
    #[cfg(not(unix))]
    Hangup()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_need_a_restart_and_routes_do_not() {
        let env = |_: &str| None;
        let base = "[[route]]\nupstream = \"http://127.0.0.1:1\"\n";
        let a = Config::parse(base, "a", &env).unwrap();
        let b = Config::parse(&format!("[server]\nlisten = \"127.0.0.1:9999\"\n{base}"), "b", &env).unwrap();
        let c = Config::parse("[[route]]\nupstream = \"http://127.0.0.1:2\"\n", "c", &env).unwrap();
        assert_eq!(needs_restart(&a, &b), ["server.listen"]);
        assert!(needs_restart(&a, &c).is_empty());
    }
}
