//! What `serve` loads before it binds, loaded by `check-config` too, so a file it
//! calls valid starts: the certificate and key (and that they belong together),
//! the secrets file or the Key Vault transport and its CA, the limit store's
//! client. Nothing is bound and no vault is called; a Redis store is asked for
//! one PING, as an operator would want to know it answers.

use std::time::Duration;

use crate::config::{Config, LimitStoreKind};
use crate::ops::app::StartError;
use crate::state::limits::RedisLimitStore;
use crate::state::secrets;
use crate::transport::tls::{self, CertResolver};

/// How long `check-config` waits for a Redis limit store to answer.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What loading found: errors `serve` would stop on, and notes worth a warning.
#[derive(Debug, Default)]
pub struct Preflight {
    pub errors: Vec<StartError>,
    pub warnings: Vec<String>,
}

/// Load everything `serve` loads from `config`, short of binding and calling out.
pub fn preflight(config: &Config) -> Preflight {
    let mut found = Preflight::default();
    let s = &config.server;
    if s.self_signed && !(s.tls_cert.exists() && s.tls_key.exists()) {
        found.warnings.push(format!(
            "server.tls_cert: {} is missing; `keypin serve` creates a self-signed development certificate \
             there (self_signed = true)",
            s.tls_cert.display()
        ));
    } else if let Err(e) = CertResolver::load(&s.tls_cert, &s.tls_key).and_then(tls::server_config) {
        found.errors.push(e.into());
    }
    if let Err(e) = secrets::check(&config.secrets) {
        found.errors.push(e.into());
    }
    if let LimitStoreKind::Redis(url) = &config.limits.store {
        match RedisLimitStore::check(url, STORE_PING_TIMEOUT) {
            Ok(warning) => found.warnings.extend(warning),
            Err(e) => found.errors.push(e.into()),
        }
    }
    found
}
