//! A scripted secret store: secrets set and removed at run time, lookups counted
//! per name, and outage modes (unavailable, hang).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keypin::config::SecretText;
use keypin::state::secrets::{BackendError, BoxFuture, Lookup, PROBE_SECRET, SecretName, SecretStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Unavailable,
    Hang,
}

pub struct CountingStore {
    secrets: Mutex<HashMap<String, String>>,
    calls: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    mode: Mutex<Mode>,
    /// Delay before answering, so concurrent callers overlap.
    pub delay: Duration,
}

impl CountingStore {
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        Self {
            secrets: Mutex::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            calls: Mutex::default(),
            total: AtomicUsize::new(0),
            mode: Mutex::new(Mode::Normal),
            delay: Duration::from_millis(20),
        }
    }

    /// The three demo users.
    pub fn demo() -> Self {
        Self::new(&[
            ("secret-1234", "user1:p@ssw0rd1"),
            ("secret-4567", "user2:p@ssw0rd2"),
            ("secret-1212", "user3:p@ssw0rd3"),
        ])
    }

    pub fn set(&self, name: &str, value: &str) {
        self.secrets.lock().unwrap().insert(name.to_owned(), value.to_owned());
    }

    pub fn remove(&self, name: &str) {
        self.secrets.lock().unwrap().remove(name);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Lookups of PINs that reached the store, all names together (readiness
    /// probes apart).
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub fn calls(&self, name: &str) -> usize {
        self.calls.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl SecretStore for CountingStore {
    fn lookup<'a>(&'a self, name: &'a SecretName) -> BoxFuture<'a, Result<Lookup, BackendError>> {
        Box::pin(async move {
            if name.as_str() != PROBE_SECRET {
                self.total.fetch_add(1, Ordering::SeqCst);
            }
            *self.calls.lock().unwrap().entry(name.as_str().to_owned()).or_default() += 1;
            tokio::time::sleep(self.delay).await;
            let mode = *self.mode.lock().unwrap();
            match mode {
                Mode::Unavailable => Err(BackendError::Unavailable("test outage".into())),
                Mode::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Err(BackendError::Timeout)
                }
                Mode::Normal => Ok(match self.secrets.lock().unwrap().get(name.as_str()) {
                    Some(v) => Lookup::Found(SecretText::new(v.clone())),
                    None => Lookup::NotFound,
                }),
            }
        })
    }
}
