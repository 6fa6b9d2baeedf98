//! Reading a configuration file: TOML, `env:NAME` references, the
//! `KEYPIN_SESSION_KEYS` override, serde into the raw shape, then validation.
//! Every problem in the file is reported at once: each bad key is set aside
//! (its default stands in) and the file read again, until it reads.

use std::path::Path;

use super::explain;
use super::model::{Config, ConfigError, Problem, SESSION_KEYS_ENV};
use super::raw::{FromEnv, RawConfig, redact, resolve_env};
use super::validate::validate;

/// More problems than this in one file are not worth listing one by one.
const MAX_PROBLEMS: usize = 50;

impl Config {
    /// Read and validate `path`, resolving `env:` references from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (text, file) = read_file(path)?;
        Self::parse(&text, &file, &|name| std::env::var(name).ok())
    }

    /// Parse and validate TOML `text` (named `file` in messages), with `env` answering
    /// `env:NAME` references and the `KEYPIN_SESSION_KEYS` override.
    pub fn parse(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut table = toml_table(text, file)?;
        let mut resolved = Vec::new();
        override_session_keys(&mut table, env, &mut resolved);
        Self::from_table(table, file, env, resolved)
    }

    /// What `keypin limits` reads from `path`: the PIN lengths, `[limits]`'s rates
    /// and lockouts, and whether the store is shared. Everything else (keys, the
    /// store's URL, the backend, routes) is left at its default, so arithmetic
    /// needs no secret in the environment.
    pub fn load_budget(path: &Path) -> Result<Self, ConfigError> {
        let (text, file) = read_file(path)?;
        let mut table = toml_table(&text, &file)?;
        table.retain(|section, _| section == "pin" || section == "limits");
        for (section, key) in [("pin", "secret_name"), ("pin", "pin_key"), ("pin", "secret_prefix")] {
            if let Some(toml::Value::Table(t)) = table.get_mut(section) {
                t.remove(key);
            }
        }
        // Only the kind of store counts (per process or shared): its URL, which may
        // come from a variable holding a password, is not needed.
        if let Some(store) = table.get_mut("limits").and_then(|l| l.get_mut("store"))
            && store.as_str() != Some("memory")
        {
            *store = "redis://redis:6379".into();
        }
        let mut route = toml::Table::new();
        route.insert("upstream".into(), "http://127.0.0.1:1".into());
        table.insert("route".into(), toml::Value::Array(vec![toml::Value::Table(route)]));
        Self::from_table(table, &file, &|name| std::env::var(name).ok(), Vec::new())
    }

    /// `resolved`: the values already taken from the environment (never echoed).
    fn from_table(
        mut table: toml::Table,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
        mut resolved: Vec<FromEnv>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        resolve_env(&mut table, "", env, &mut resolved, &mut problems);
        for p in &problems {
            set_aside(&mut table, &p.key);
        }
        loop {
            match read(&table, file) {
                Ok(config) if problems.is_empty() => return Ok(config),
                Ok(_) => break,
                Err(p) => {
                    if problems.iter().any(|q| q.key == p.key) {
                        break;
                    }
                    let removed = set_aside(&mut table, &p.key);
                    problems.push(p);
                    if !removed || problems.len() >= MAX_PROBLEMS {
                        break;
                    }
                }
            }
        }
        // Values read through `env:` are never echoed: they may be secrets.
        for p in &mut problems {
            p.reason = redact(&p.key, std::mem::take(&mut p.reason), &resolved);
        }
        Err(ConfigError { file: file.to_owned(), problems })
    }
}

/// The file's text, and its name for messages.
fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, file)),
        Err(e) => Err(ConfigError::one(&file, "", format!("cannot read: {e}"))),
    }
}

/// The file as a TOML table, or where its syntax fails.
fn toml_table(text: &str, file: &str) -> Result<toml::Table, ConfigError> {
    text.parse().map_err(|e| ConfigError { file: file.to_owned(), problems: vec![explain::syntax(text, &e)] })
}

/// KEYPIN_SESSION_KEYS replaces session.keys before any `env:` in the file is
/// resolved: a file naming another variable still works with it. Keys may hold
/// whitespace (`openssl rand -base64 64` wraps lines).
fn override_session_keys(table: &mut toml::Table, env: &dyn Fn(&str) -> Option<String>, resolved: &mut Vec<FromEnv>) {
    let Some(keys) = env(SESSION_KEYS_ENV).filter(|k| !k.trim().is_empty()) else {
        return;
    };
    let mut values = Vec::new();
    for (i, key) in keys.split(',').map(str::trim).enumerate() {
        resolved.push(FromEnv {
            key: format!("session.keys[{i}]"),
            variable: SESSION_KEYS_ENV.into(),
            value: key.to_owned().into(),
        });
        values.push(toml::Value::String(key.to_owned()));
    }
    let session = table.entry("session").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(session) = session {
        session.insert("keys".into(), toml::Value::Array(values));
    }
}

/// The table through serde and validation: the configuration, or the first problem.
fn read(table: &toml::Table, file: &str) -> Result<Config, Problem> {
    let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let message = e.inner().message().to_owned();
        // serde_path_to_error's path ends at the unknown field itself, or before it.
        let key = match unknown_field(&message) {
            Some(field) if key.is_empty() => field.to_owned(),
            Some(field) if !key.ends_with(&format!(".{field}")) && key != field => format!("{key}.{field}"),
            _ => key,
        };
        let reason = explain::value_error(&key, &message, value_at(table, &key));
        Problem::new(key, reason)
    })?;
    validate(raw, file)
}

/// The field serde's "unknown field `x`, expected …" names.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// One step of a dotted key: a table's field or an array's element.
enum Step<'a> {
    Field(&'a str),
    Element(usize),
}

/// `route[0].public_paths[1]` as its steps.
fn steps(key: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
            out.push(Step::Field(name));
        }
        for index in pieces {
            match index.trim_end_matches(']').parse() {
                Ok(i) => out.push(Step::Element(i)),
                Err(_) => return Vec::new(),
            }
        }
    }
    out
}

/// The value at `key`, when the file has one there.
fn value_at<'t>(table: &'t toml::Table, key: &str) -> Option<&'t toml::Value> {
    let mut steps = steps(key).into_iter();
    let Some(Step::Field(first)) = steps.next() else { return None };
    steps.try_fold(table.get(first)?, |value, step| match step {
        Step::Field(name) => value.as_table()?.get(name),
        Step::Element(i) => value.as_array()?.get(i),
    })
}

/// [`value_at`] for changing it, by steps.
fn value_at_mut<'t>(table: &'t mut toml::Table, steps: &[Step<'_>]) -> Option<&'t mut toml::Value> {
    let (Step::Field(first), rest) = steps.split_first()? else { return None };
    rest.iter().try_fold(table.get_mut(*first)?, |value, step| match step {
        Step::Field(name) => value.as_table_mut()?.get_mut(*name),
        Step::Element(i) => value.as_array_mut()?.get_mut(*i),
    })
}

/// Remove the setting a problem names, so its default stands in and the rest of
/// the file can be checked. A list loses the whole list; a `[[route]]` cannot be
/// set aside (the others would change their numbers). False when nothing was removed.
fn set_aside(table: &mut toml::Table, key: &str) -> bool {
    let mut steps = steps(key);
    while matches!(steps.last(), Some(Step::Element(_))) {
        steps.pop();
    }
    let Some(Step::Field(last)) = steps.pop() else { return false };
    if steps.is_empty() && last == "route" {
        return false;
    }
    let here = if steps.is_empty() { Some(table) } else { value_at_mut(table, &steps).and_then(|v| v.as_table_mut()) };
    here.is_some_and(|here| here.remove(last).is_some())
}
