//! Reading a configuration file: TOML, `env:NAME` references, the
//! `KEYPIN_SESSION_KEYS` override, serde into the raw shape, then validation.

use std::path::Path;

use super::model::{Config, ConfigError, SESSION_KEYS_ENV};
use super::raw::{FromEnv, RawConfig, redact, resolve_env};
use super::validate::validate;

impl Config {
    /// Read and validate `path`, resolving `env:` references from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &file, &|name| std::env::var(name).ok())
    }

    /// Parse and validate TOML `text` (named `file` in messages), with `env` answering
    /// `env:NAME` references and the `KEYPIN_SESSION_KEYS` override.
    pub fn parse(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut resolved = Vec::new();
        let err = |key: String, reason: String| ConfigError { file: file.to_owned(), key, reason };
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| err(String::new(), e.message().to_owned()))?;
        // KEYPIN_SESSION_KEYS replaces session.keys before any `env:` in the file
        // is resolved: a file naming another variable still works with it.
        if let Some(keys) = env(SESSION_KEYS_ENV).filter(|k| !k.trim().is_empty()) {
            for (i, key) in keys.split(',').enumerate() {
                let value = key.trim().to_owned().into();
                resolved.push(FromEnv { key: format!("session.keys[{i}]"), variable: SESSION_KEYS_ENV.into(), value });
            }
            let keys = keys.split(',').map(|k| toml::Value::String(k.trim().to_owned()));
            let session = table.entry("session").or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(session) = session {
                session.insert("keys".into(), toml::Value::Array(keys.collect()));
            }
        }
        resolve_env(&mut table, "", env, &mut resolved).map_err(|e| err(e.key, e.reason))?;
        // Values read through `env:` are never echoed: they may be secrets.
        let err = |key: String, reason: String| {
            let reason = redact(&key, reason, &resolved);
            err(key, reason)
        };
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| err(e.path().to_string(), e.inner().message().to_owned()))?;
        validate(raw, file).map_err(|e| err(e.key, e.reason))
    }
}
