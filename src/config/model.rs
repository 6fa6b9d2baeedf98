//! The validated configuration: the typed values the rest of keypin is built from,
//! and the one error a file can produce. Nothing downstream sees an unparsed string.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use http::uri::Uri;
use ipnet::IpNet;
use serde::Deserialize;

use super::de;
use super::redacted::{PinKey, SecretText, SessionKey};
use super::values::{Inject, LimitStoreKind, Rate, UpstreamUrl};

/// Where `keypin serve` looks when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/keypin.toml";
/// Environment variable whose comma-separated keys replace `session.keys`.
pub const SESSION_KEYS_ENV: &str = "KEYPIN_SESSION_KEYS";
/// The longest `session.ttl`; revocations are kept this long, so no revoked
/// session can outlive its revocation, whatever the ttl is reloaded to.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What is wrong with a configuration file: every problem found in it, each
/// naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    /// Never empty; in the file's order as far as it could be read.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// A file with one problem.
    pub(super) fn one(file: &str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { file: file.to_owned(), problems: vec![Problem::new(key, reason)] }
    }

    /// The first problem (there always is one).
    #[cfg(test)]
    pub(super) fn first(&self) -> &Problem {
        &self.problems[0]
    }
}

/// One line per problem, each `file: key: reason`, so a search for the key finds it.
impl ConfigError {
    /// Each problem as `file: key: reason` (a syntax error's reason goes on over
    /// indented lines: the file's line and a caret).
    pub fn messages(&self) -> impl Iterator<Item = String> + '_ {
        self.problems.iter().map(|p| match p.key.is_empty() {
            true => format!("{}: {}", self.file, p.reason),
            false => format!("{}: {}: {}", self.file, p.key, p.reason),
        })
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, message) in self.messages().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&message)?;
        }
        Ok(())
    }
}

/// One invalid key: its dotted path (`route[0].upstream`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

impl Problem {
    pub(super) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub source: String,
    pub server: ServerConfig,
    pub pin: PinConfig,
    pub secrets: SecretsConfig,
    pub session: SessionConfig,
    pub limits: LimitsConfig,
    pub routes: Vec<RouteConfig>,
    pub ui: UiConfig,
}

/// How keypin's own pages look (`[ui]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiConfig {
    /// Page title and heading of the sign-in page.
    pub title: String,
    /// The line under the heading.
    pub message: String,
    /// The logo as a `data:` URI (inlined: the page loads nothing from elsewhere).
    pub logo: Option<String>,
    /// An operator's complete page template, read at load (see docs/configuration.md).
    pub template: Option<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self { title: "Sign in".into(), message: "Enter your PIN to continue.".into(), logo: None, template: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// TLS listener (HTTP/1.1 and HTTP/2 by ALPN).
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Create a development certificate and key at `tls_cert`/`tls_key` when missing.
    pub self_signed: bool,
    /// Plain-HTTP admin listener: health, readiness, metrics. Never public.
    pub admin_listen: SocketAddr,
    /// A plain HTTP/1.1 listener serving what the TLS listener serves, for use
    /// behind an ingress that terminates TLS (forward-auth, or proxying).
    pub plain_listen: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-For` is believed for the client address.
    #[serde(deserialize_with = "de::networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Bound on the TLS handshake and on reading a request head (slowloris).
    #[serde(deserialize_with = "de::duration")]
    pub header_read_timeout: Duration,
    /// How long a connection may idle between requests (HTTP/1.1 keep-alive, an
    /// HTTP/2 connection with no stream open).
    #[serde(deserialize_with = "de::duration")]
    pub keepalive_timeout: Duration,
    /// Bound on waiting for the upstream's response head.
    #[serde(deserialize_with = "de::duration")]
    pub upstream_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Worker threads serving connections; one per CPU when absent.
    pub workers: Option<NonZeroUsize>,
    /// `Strict-Transport-Security: max-age` on every answer; zero sends none.
    #[serde(deserialize_with = "de::duration")]
    pub hsts_max_age: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: PathBuf::from("certs/keypin.pem"),
            tls_key: PathBuf::from("certs/keypin-key.pem"),
            self_signed: false,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9443)),
            plain_listen: None,
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            upstream_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            hsts_max_age: Duration::from_secs(365 * 24 * 3600),
            workers: None,
        }
    }
}

impl ServerConfig {
    /// The number of worker threads: `workers`, else one per CPU keypin may use.
    pub fn worker_count(&self) -> usize {
        self.workers.or_else(|| std::thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get)
    }

    /// Whether `ip` is one of the configured trusted proxies.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 peer it stands for.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// How a PIN becomes a secret name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretNaming {
    /// `<prefix><PIN>`: whoever may list the vault's secrets sees every PIN.
    #[default]
    Plain,
    /// `<prefix>` + 32 hex characters of HMAC-SHA256(`pin_key`, PIN).
    Hmac,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinConfig {
    /// Secret name = prefix + PIN (or + its HMAC, see `secret_name`).
    pub secret_prefix: String,
    pub secret_name: SecretNaming,
    /// The HMAC key of `secret_name = "hmac"`.
    pub pin_key: Option<PinKey>,
    pub min_digits: u8,
    pub max_digits: u8,
    /// Floor on the time a login answer takes, so timing tells nothing.
    #[serde(deserialize_with = "de::duration")]
    pub min_response: Duration,
}

impl Default for PinConfig {
    fn default() -> Self {
        Self {
            secret_prefix: "secret-".into(),
            secret_name: SecretNaming::Plain,
            pin_key: None,
            min_digits: 4,
            max_digits: 10,
            min_response: Duration::from_millis(250),
        }
    }
}

/// Where secrets come from, plus the cache in front of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretsConfig {
    pub backend: SecretBackend,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
    pub stale_if_error: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SecretBackend {
    /// A TOML file of `name = "value"` pairs, re-read when it changes.
    File {
        path: PathBuf,
    },
    KeyVault(KeyVaultConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyVaultConfig {
    pub vault_url: Uri,
    pub credential: CredentialConfig,
    /// Extra trusted root for emulators.
    pub ca_cert: Option<PathBuf>,
}

/// How keypin authenticates to Key Vault.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialConfig {
    /// Workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set, else managed identity.
    Default {
        client_id: Option<String>,
    },
    ManagedIdentity {
        client_id: Option<String>,
    },
    WorkloadIdentity {
        client_id: Option<String>,
        tenant_id: Option<String>,
    },
    AzureCli {
        tenant_id: Option<String>,
    },
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: SecretText,
    },
    /// A fixed bearer token, for emulators on loopback only (or when allowed explicitly).
    StaticToken {
        token: SecretText,
    },
}

impl CredentialConfig {
    /// Every name `secrets.credential` accepts.
    pub const KINDS: [&'static str; 6] =
        ["default", "managed_identity", "workload_identity", "azure_cli", "client_secret", "static_token"];

    /// This credential's name in `secrets.credential`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Default { .. } => "default",
            Self::ManagedIdentity { .. } => "managed_identity",
            Self::WorkloadIdentity { .. } => "workload_identity",
            Self::AzureCli { .. } => "azure_cli",
            Self::ClientSecret { .. } => "client_secret",
            Self::StaticToken { .. } => "static_token",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub cookie_name: String,
    /// What tells this deployment from another (where its secrets come from, how
    /// PINs name them, its cookie name): cookie keys are derived from the session
    /// keys and this, so two deployments that share a session key still do not
    /// accept each other's cookies. Set by validation; empty in hand-made configs.
    pub deployment: String,
    /// The first seals; all open (rotation). Empty only in `check-config`, which warns.
    pub keys: Vec<SessionKey>,
    pub ttl: Duration,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub login_per_ip: Rate,
    pub login_global: Rate,
    pub lockout_after: u32,
    #[serde(deserialize_with = "de::duration")]
    pub lockout_base: Duration,
    #[serde(deserialize_with = "de::duration")]
    pub lockout_max: Duration,
    pub attack_failures: Rate,
    #[serde(deserialize_with = "de::duration")]
    pub attack_cooldown: Duration,
    pub store: LimitStoreKind,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            login_per_ip: Rate::per(5, Duration::from_secs(60)),
            login_global: Rate::per(100, Duration::from_secs(1)),
            lockout_after: 10,
            lockout_base: Duration::from_secs(60),
            lockout_max: Duration::from_secs(3600),
            attack_failures: Rate::per(200, Duration::from_secs(3600)),
            attack_cooldown: Duration::from_secs(3600),
            store: LimitStoreKind::Memory,
        }
    }
}

/// One `[[route]]`: where matching requests go and how the identity is injected.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The metrics label.
    pub name: String,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    /// Segment-wise prefix of the normalized path; always starts with `/`.
    pub path_prefix: String,
    /// Where requests go; `None` for a route used only through forward-auth.
    pub upstream: Option<UpstreamUrl>,
    /// Certificates trusted for an https upstream besides the web PKI roots
    /// (`ca_cert`, a PEM bundle): a legacy app's private CA.
    pub upstream_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The route's own PIN namespace (`secret_prefix`); `None`: `pin.secret_prefix`'s.
    pub secret_prefix: Option<String>,
    pub inject: Inject,
    pub user_header: HeaderName,
    /// Served without login: an entry ending in `/` covers everything below it,
    /// any other entry is one exact path.
    pub public_paths: Vec<String>,
    /// Forward the client's `Host` (true) or the upstream's authority (false).
    pub preserve_host: bool,
}
