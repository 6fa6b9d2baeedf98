//! The file secret store: a TOML file of `"secret-1234" = "user:password"` pairs,
//! polled for changes. A bad edit keeps the last good content and logs an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use zeroize::Zeroizing;

use super::store::{BackendError, BoxFuture, Lookup, SecretName, SecretStore};
use crate::config::{SecretText, Stamp, stamp, world_readable_mode};

/// How often the file is checked for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(1);

type Entries = Arc<HashMap<String, SecretText>>;

/// Secrets from a TOML file (or from embedded text, for the demo).
pub struct FileStore {
    entries: RwLock<Entries>,
    /// Where to reload from; `None` for embedded content.
    path: Option<PathBuf>,
    /// The file's stamp taken before the content in use was read.
    loaded: Option<Stamp>,
    /// Bumped after each swap of `entries`.
    generation: AtomicU64,
}

/// Why a secrets file was refused. Never quotes the file, nor names an entry: the
/// values are passwords and the names embed PINs. Each message is whole: no
/// variant chains a `source` (the command line prints chains in full).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("a value is not a string \"username:password\"")]
    NotAString,
    #[error("{path}: {error}")]
    In { path: PathBuf, error: Box<FileError> },
}

/// Parse the secrets file.
fn parse(text: &str) -> Result<Entries, FileError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].lines().count().max(1));
        FileError::Syntax { line, message: e.message().to_owned() }
    })?;
    let mut entries = HashMap::with_capacity(table.len());
    for (name, value) in table {
        let toml::Value::String(value) = value else {
            return Err(FileError::NotAString);
        };
        entries.insert(name, SecretText::new(value));
    }
    Ok(Arc::new(entries))
}

impl FileStore {
    /// Load `path`; it must parse. Warns when other users can read it.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        // Stamp first: a change made while reading is then seen as a change.
        let loaded = stamp(path);
        let text = read(path)?;
        let entries = parse(&text).map_err(|e| FileError::In { path: path.to_owned(), error: Box::new(e) })?;
        warn_if_readable_by_others(path);
        Ok(Self { entries: RwLock::new(entries), path: Some(path.to_owned()), loaded, generation: AtomicU64::new(0) })
    }

    /// Secrets from text compiled into the binary; never reloaded.
    pub fn embedded(text: &str) -> Result<Self, FileError> {
        Ok(Self { entries: RwLock::new(parse(text)?), path: None, loaded: None, generation: AtomicU64::new(0) })
    }

    /// Poll the file every [`RELOAD_POLL`] and swap in new content when it parses.
    /// The task ends when the store is dropped.
    pub fn watch(self: &Arc<Self>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut last = self.loaded;
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = crate::transport::upkeep::every(RELOAD_POLL);
            loop {
                interval.tick().await;
                let Some(store) = store.upgrade() else { return };
                let now = stamp(&path);
                if now == last {
                    continue;
                }
                last = now;
                match read(&path).and_then(|t| parse(&t)) {
                    Ok(entries) => {
                        let count = entries.len();
                        *store.entries.write() = entries;
                        store.generation.fetch_add(1, Ordering::Release);
                        tracing::info!(file = %path.display(), secrets = count, "secrets file reloaded");
                    }
                    Err(e) => tracing::error!(
                        file = %path.display(),
                        error = %e,
                        "secrets file changed but is invalid; keeping the previous content"
                    ),
                }
            }
        });
    }
}

impl SecretStore for FileStore {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn lookup<'a>(&'a self, name: &'a SecretName) -> BoxFuture<'a, Result<Lookup, BackendError>> {
        let entries = self.entries.read().clone();
        Box::pin(async move {
            Ok(match entries.get(name.as_str()) {
                Some(value) => Lookup::Found(value.clone()),
                None => Lookup::NotFound,
            })
        })
    }
}

/// The file's text, zeroized once parsed: it holds every password.
fn read(path: &Path) -> Result<Zeroizing<String>, FileError> {
    std::fs::read_to_string(path).map(Zeroizing::new).map_err(|error| FileError::Read { path: path.to_owned(), error })
}

fn warn_if_readable_by_others(path: &Path) {
    if let Some(mode) = world_readable_mode(path) {
        tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "secrets file is readable by other users; chmod 600 it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(pin: &str) -> SecretName {
        SecretName::for_pin("secret-", pin)
    }

    async fn get(store: &FileStore, pin: &str) -> Option<String> {
        match store.lookup(&name(pin)).await.unwrap() {
            Lookup::Found(v) => Some(v.expose().to_owned()),
            Lookup::NotFound => None,
        }
    }

    #[tokio::test]
    async fn embedded_dev_secrets_resolve() {
        let store = FileStore::embedded(include_str!("../../../config/dev-secrets.toml")).unwrap();
        assert_eq!(get(&store, "1234").await.as_deref(), Some("user1:p@ssw0rd1"));
        assert_eq!(get(&store, "4567").await.as_deref(), Some("user2:p@ssw0rd2"));
        assert_eq!(get(&store, "1212").await.as_deref(), Some("user3:p@ssw0rd3"));
        assert_eq!(get(&store, "9999").await, None);
    }

    #[test]
    fn parse_errors_do_not_quote_the_file() {
        let e = parse("\"secret-1\" = \"user:hunter2\"\nbroken = [\n").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse("\"secret-5678\" = 1234\n").unwrap_err().to_string();
        assert!(!e.contains("5678") && !e.contains("1234"), "names embed PINs: {e}");
    }

    #[tokio::test]
    async fn edits_are_picked_up_and_bad_edits_keep_the_last_good_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, "\"secret-1111\" = \"a:1\"\n").unwrap();
        let store = Arc::new(FileStore::load(&path).unwrap());
        store.watch();
        assert_eq!(get(&store, "1111").await.as_deref(), Some("a:1"));

        std::fs::write(&path, "\"secret-1111\" = \"a:2\"\n\"secret-2222\" = \"b:2\"\n").unwrap();
        wait_for(|| async { get(&store, "2222").await.is_some() }).await;
        assert_eq!(get(&store, "1111").await.as_deref(), Some("a:2"));

        std::fs::write(&path, "this is not toml = = =").unwrap();
        tokio::time::sleep(RELOAD_POLL * 2).await;
        assert_eq!(get(&store, "2222").await.as_deref(), Some("b:2"), "a bad edit keeps the old content");
    }

    async fn wait_for<F, Fut>(check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..50 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("condition not reached in 5 s");
    }
}
