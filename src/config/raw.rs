//! The configuration file's raw shape: serde structs with defaults, and `env:NAME`
//! resolution.

use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use serde::Deserialize;

use super::de;
use super::model::{LimitsConfig, PinConfig, Problem, ServerConfig};
use super::values::{Inject, UpstreamUrl};

/// Prefix that makes a string value an environment reference.
const ENV_PREFIX: &str = "env:";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: ServerConfig,
    #[serde(default)]
    pub(super) pin: PinConfig,
    #[serde(default)]
    pub(super) secrets: RawSecrets,
    #[serde(default)]
    pub(super) session: RawSession,
    #[serde(default)]
    pub(super) limits: LimitsConfig,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
    #[serde(default)]
    pub(super) ui: RawUi,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUi {
    pub(super) title: Option<String>,
    pub(super) message: Option<String>,
    pub(super) logo: Option<PathBuf>,
    pub(super) template: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(super) enum BackendKind {
    #[default]
    File,
    Keyvault,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSecrets {
    pub(super) backend: BackendKind,
    pub(super) path: PathBuf,
    pub(super) vault_url: Option<String>,
    /// The credential's kind, read by `validate` into the one `CredentialConfig`.
    pub(super) credential: String,
    pub(super) client_id: Option<String>,
    pub(super) tenant_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) static_token: Option<String>,
    pub(super) allow_static_token: bool,
    pub(super) ca_cert: Option<PathBuf>,
    #[serde(deserialize_with = "de::duration")]
    pub(super) cache_ttl: Duration,
    #[serde(deserialize_with = "de::duration")]
    pub(super) negative_cache_ttl: Duration,
    #[serde(deserialize_with = "de::duration")]
    pub(super) stale_if_error: Duration,
    #[serde(deserialize_with = "de::duration")]
    pub(super) request_timeout: Duration,
}

impl Default for RawSecrets {
    fn default() -> Self {
        Self {
            backend: BackendKind::File,
            path: PathBuf::from("config/dev-secrets.toml"),
            vault_url: None,
            credential: "default".into(),
            client_id: None,
            tenant_id: None,
            client_secret: None,
            static_token: None,
            allow_static_token: false,
            ca_cert: None,
            cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(600),
            request_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSession {
    pub(super) cookie_name: String,
    pub(super) keys: Vec<String>,
    #[serde(deserialize_with = "de::duration")]
    pub(super) ttl: Duration,
    #[serde(deserialize_with = "de::duration")]
    pub(super) idle_timeout: Duration,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            cookie_name: "__Host-keypin".into(),
            keys: Vec::new(),
            ttl: Duration::from_secs(8 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Option<String>,
    pub(super) host: Option<String>,
    #[serde(default = "default_path_prefix")]
    pub(super) path_prefix: String,
    #[serde(default)]
    pub(super) upstream: Option<UpstreamUrl>,
    #[serde(default)]
    pub(super) ca_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub(super) secret_prefix: Option<String>,
    #[serde(default = "default_inject")]
    pub(super) inject: Inject,
    #[serde(default = "default_user_header", deserialize_with = "de::from_str")]
    pub(super) user_header: HeaderName,
    #[serde(default)]
    pub(super) public_paths: Vec<String>,
    #[serde(default = "default_true")]
    pub(super) preserve_host: bool,
}

fn default_path_prefix() -> String {
    "/".into()
}
fn default_inject() -> Inject {
    Inject::Basic
}
fn default_user_header() -> HeaderName {
    HeaderName::from_static("x-forwarded-user")
}
fn default_true() -> bool {
    true
}

/// Replace every string `"env:NAME"` in the tree by the variable's value; each
/// variable not set is a problem (and its string stays as it was).
pub(super) fn resolve_env(
    table: &mut toml::Table,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
    resolved: &mut Vec<FromEnv>,
    problems: &mut Vec<Problem>,
) {
    for (key, value) in table.iter_mut() {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        resolve_value(value, &path, env, resolved, problems);
    }
}

/// A value read from the environment: where it went, from which variable, and
/// the value itself, which error messages must not repeat (it may be a secret).
pub(super) struct FromEnv {
    pub(super) key: String,
    pub(super) variable: String,
    pub(super) value: zeroize::Zeroizing<String>,
}

fn resolve_value(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    resolved: &mut Vec<FromEnv>,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) => {
            if let Some(name) = s.strip_prefix(ENV_PREFIX) {
                match env(name) {
                    Some(read) => {
                        resolved.push(FromEnv {
                            key: path.to_owned(),
                            variable: name.to_owned(),
                            value: read.clone().into(),
                        });
                        *s = read;
                    }
                    None => problems.push(Problem::new(path, format!("environment variable {name} is not set"))),
                }
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_value(item, &format!("{path}[{i}]"), env, resolved, problems);
            }
        }
        toml::Value::Table(t) => resolve_env(t, path, env, resolved, problems),
        _ => {}
    }
}

/// `reason` with every value read from the environment shown as its variable's
/// name instead: any value for the key in error, and elsewhere values long enough
/// not to match by chance.
pub(super) fn redact(key: &str, reason: String, resolved: &[FromEnv]) -> String {
    resolved.iter().fold(reason, |reason, e| {
        let here = key == e.key || key.starts_with(&format!("{}[", e.key)) || e.key.starts_with(&format!("{key}["));
        if !e.value.is_empty() && (here || e.value.len() >= 6) && reason.contains(e.value.as_str()) {
            reason.replace(e.value.as_str(), &format!("${{{}}}", e.variable))
        } else {
            reason
        }
    })
}
