//! The cache in front of any `SecretStore`: found secrets for `cache_ttl`, unknown
//! names for `negative_cache_ttl`, concurrent lookups of one name coalesced into one
//! backend call, and the last good value kept for `stale_if_error` so an outage does
//! not end sessions. The answers of the last second are also kept in front of it
//! (`recent`), for the requests of a session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use parking_lot::Mutex;

use super::recent::RecentAnswers;
use super::store::{BackendError, Credentials, Lookup, PROBE_SECRET, SecretName, SecretStore};
use crate::config::SecretsConfig;
use crate::observe::metrics::{LookupResult, Metrics};

/// Most names remembered at once (found, unknown and stale each).
const MAX_ENTRIES: u64 = 100_000;

/// A cached answer.
#[derive(Clone)]
enum Entry {
    Found(Arc<Credentials>),
    NotFound,
    /// The secret exists but holds no `username:password`; cached so the problem
    /// is logged once per `cache_ttl`, not once per request.
    Invalid,
}

/// What the cache resolved a name to.
#[derive(Debug, Clone)]
pub enum Resolved {
    Found(Arc<Credentials>),
    NotFound,
}

/// Whether a lookup may fall back to a value the backend can no longer confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// A login: only a fresh answer counts.
    FreshOnly,
    /// An existing session: the last good value is fine for `stale_if_error`.
    AllowStale,
}

/// A cached answer and when the cache drops it.
#[derive(Clone)]
struct Cached {
    entry: Entry,
    expires: Instant,
}

/// The cache keeps each answer until its `expires`.
struct UntilExpires;

impl Expiry<SecretName, Cached> for UntilExpires {
    fn expire_after_create(&self, _: &SecretName, value: &Cached, created_at: Instant) -> Option<Duration> {
        Some(value.expires.saturating_duration_since(created_at))
    }
}

/// How long each kind of answer stays cached (`cache_ttl`, `negative_cache_ttl`).
struct TtlByAnswer {
    found: Duration,
    not_found: Duration,
}

impl TtlByAnswer {
    fn of(&self, entry: &Entry) -> Duration {
        match entry {
            Entry::Found(_) | Entry::Invalid => self.found,
            Entry::NotFound => self.not_found,
        }
    }
}

/// Whether the backend answered its last call, for `/readyz`.
#[derive(Debug, Default)]
pub struct BackendHealth {
    /// The kind of the last call's failure; `None` while it answers.
    failing: Mutex<Option<&'static str>>,
}

impl BackendHealth {
    fn record<T>(&self, result: &Result<T, BackendError>) {
        let now = match result {
            // Bad data is an answer: the backend itself is up.
            Ok(_) | Err(BackendError::InvalidValue) => None,
            Err(e) => Some(e.kind()),
        };
        let mut failing = self.failing.lock();
        match (*failing, now) {
            (None, Some(kind)) => tracing::warn!(kind, "secret backend is failing; /readyz answers 503"),
            (Some(_), None) => tracing::info!("secret backend answers again"),
            _ => {}
        }
        *failing = now;
    }

    /// `Err(kind)` while the last backend call failed.
    pub fn ready(&self) -> Result<(), &'static str> {
        self.failing.lock().map_or(Ok(()), Err)
    }
}

pub struct SecretCache {
    store: Arc<dyn SecretStore>,
    health: Arc<BackendHealth>,
    metrics: Arc<Metrics>,
    fresh: Cache<SecretName, Cached>,
    ttl: TtlByAnswer,
    /// The answers of the last second, in front of `fresh`.
    recent: RecentAnswers<Entry>,
    /// Last good value per name, for `cache_ttl + stale_if_error` after it was read.
    last_good: Cache<SecretName, Arc<Credentials>>,
    request_timeout: Duration,
    /// The store's generation the cached answers belong to.
    generation: AtomicU64,
}

impl SecretCache {
    pub fn new(store: Arc<dyn SecretStore>, config: &SecretsConfig, metrics: Arc<Metrics>) -> Self {
        let fresh = Cache::builder().max_capacity(MAX_ENTRIES).expire_after(UntilExpires).build();
        let last_good =
            Cache::builder().max_capacity(MAX_ENTRIES).time_to_live(config.cache_ttl + config.stale_if_error).build();
        let generation = AtomicU64::new(store.generation());
        Self {
            store,
            health: Arc::default(),
            metrics,
            fresh,
            ttl: TtlByAnswer { found: config.cache_ttl, not_found: config.negative_cache_ttl },
            recent: RecentAnswers::new(),
            last_good,
            request_timeout: config.request_timeout,
            generation,
        }
    }

    /// The store behind the cache (a reload that only changes TTLs keeps it).
    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.store
    }

    pub fn health(&self) -> Arc<BackendHealth> {
        self.health.clone()
    }

    /// Ask the store for a name no PIN can produce, past the cache: warms the
    /// client (Key Vault's challenge round trip) and refreshes [`BackendHealth`].
    pub async fn probe(&self) -> Result<(), BackendError> {
        let name = SecretName(PROBE_SECRET.to_owned());
        self.call_store(&name).await.map(drop)
    }

    async fn call_store(&self, name: &SecretName) -> Result<Lookup, BackendError> {
        let result = tokio::time::timeout(self.request_timeout, self.store.lookup(name))
            .await
            .unwrap_or(Err(BackendError::Timeout));
        self.health.record(&result);
        result
    }

    /// Resolve `name`, from the cache when fresh, else from the store (one call
    /// however many ask at once).
    ///
    /// An answer of the last second, every request's path, is given without an
    /// `await`, so the future stays a few words; the rest is boxed (moka's and the
    /// store's futures are large, and every caller's future would hold them).
    pub async fn resolve(&self, name: &SecretName, staleness: Staleness) -> Result<Resolved, BackendError> {
        match self.recent_answer(name) {
            Some(entry) => resolved(Ok(entry)),
            None => Box::pin(self.resolve_stored(name, staleness)).await,
        }
    }

    /// The answer kept for `name` in the last second, counted as a hit, if any and
    /// of the store's current generation.
    fn recent_answer(&self, name: &SecretName) -> Option<Entry> {
        let entry = self.recent.get(name, self.store.generation(), Instant::now())?;
        self.count_hit(&entry);
        Some(entry)
    }

    fn count_hit(&self, entry: &Entry) {
        self.metrics.lookup(match entry {
            Entry::Found(_) => LookupResult::Hit,
            Entry::NotFound => LookupResult::NotFound,
            Entry::Invalid => LookupResult::Error,
        });
    }

    /// [`resolve`](Self::resolve) past the answers of the last second: the cache,
    /// then the store, then the last good value if allowed.
    async fn resolve_stored(&self, name: &SecretName, staleness: Staleness) -> Result<Resolved, BackendError> {
        // The store's content changed (a re-read file): no answer of before stands,
        // found or not found.
        let generation = self.store.generation();
        if self.generation.load(Ordering::Relaxed) != generation
            && self.generation.swap(generation, Ordering::Relaxed) != generation
        {
            self.fresh.invalidate_all();
            self.last_good.invalidate_all();
        }
        let answer = match self.fresh.get(name).await {
            Some(cached) => {
                self.recent.keep(name, cached.entry.clone(), generation, Instant::now(), cached.expires);
                self.count_hit(&cached.entry);
                Ok(cached.entry)
            }
            None => self.load(name).await,
        };
        match (answer, staleness) {
            (Err(e), Staleness::AllowStale) => match self.last_good.get(name).await {
                Some(creds) => {
                    tracing::debug!(error = %e, "secret backend failed; serving the last good value");
                    Ok(Resolved::Found(creds))
                }
                None => resolved(Err(e)),
            },
            (answer, _) => resolved(answer),
        }
    }

    /// A name not in the cache: fetch it, coalesced with concurrent askers.
    async fn load(&self, name: &SecretName) -> Result<Entry, Arc<BackendError>> {
        // Set when this call's own fetch ran; coalesced waiters count as cache hits.
        let fetched = AtomicBool::new(false);
        let fetch = async {
            fetched.store(true, Ordering::Relaxed);
            self.fetch(name).await
        };
        let answer = self.fresh.try_get_with(name.clone(), fetch).await.map(|cached| cached.entry);
        self.metrics.lookup(match &answer {
            Ok(Entry::Found(_)) if fetched.load(Ordering::Relaxed) => LookupResult::Miss,
            Ok(Entry::Found(_)) => LookupResult::Hit,
            Ok(Entry::NotFound) => LookupResult::NotFound,
            Ok(Entry::Invalid) | Err(_) => LookupResult::Error,
        });
        answer
    }

    async fn fetch(&self, name: &SecretName) -> Result<Cached, BackendError> {
        let entry = self.fetch_entry(name).await?;
        Ok(Cached { expires: Instant::now() + self.ttl.of(&entry), entry })
    }

    async fn fetch_entry(&self, name: &SecretName) -> Result<Entry, BackendError> {
        Ok(match self.call_store(name).await? {
            Lookup::Found(value) => match Credentials::parse(&value) {
                Ok(creds) => {
                    let creds = Arc::new(creds);
                    self.last_good.insert(name.clone(), creds.clone()).await;
                    Entry::Found(creds)
                }
                Err(_) => {
                    tracing::error!("a secret's value is not \"username:password\"; logins with it answer 503");
                    Entry::Invalid
                }
            },
            Lookup::NotFound => {
                // Deleted: sessions built on it must end, not live on as stale.
                self.last_good.invalidate(name).await;
                Entry::NotFound
            }
        })
    }
}

/// A cache entry or a failed fetch as the caller sees it.
fn resolved(answer: Result<Entry, Arc<BackendError>>) -> Result<Resolved, BackendError> {
    match answer {
        Ok(Entry::Found(creds)) => Ok(Resolved::Found(creds)),
        Ok(Entry::NotFound) => Ok(Resolved::NotFound),
        Ok(Entry::Invalid) => Err(BackendError::InvalidValue),
        Err(e) => Err((*e).clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::SecretText;
    use crate::state::secrets::BoxFuture;

    /// A store whose answer the test sets, counting calls.
    #[derive(Default)]
    struct Scripted {
        answer: Mutex<Option<Result<Option<String>, BackendError>>>,
        calls: AtomicUsize,
        delay: Duration,
    }

    impl Scripted {
        fn set(&self, answer: Result<Option<&str>, BackendError>) {
            *self.answer.lock().unwrap() = Some(answer.map(|v| v.map(str::to_owned)));
        }
    }

    impl SecretStore for Scripted {
        fn lookup<'a>(&'a self, _: &'a SecretName) -> BoxFuture<'a, Result<Lookup, BackendError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                match self.answer.lock().unwrap().clone().expect("answer set") {
                    Ok(Some(v)) => Ok(Lookup::Found(SecretText::new(v))),
                    Ok(None) => Ok(Lookup::NotFound),
                    Err(e) => Err(e),
                }
            })
        }
    }

    fn config(ttl_ms: u64, stale_ms: u64) -> SecretsConfig {
        SecretsConfig {
            backend: crate::config::SecretBackend::File { path: "unused".into() },
            cache_ttl: Duration::from_millis(ttl_ms),
            negative_cache_ttl: Duration::from_millis(ttl_ms),
            stale_if_error: Duration::from_millis(stale_ms),
            request_timeout: Duration::from_millis(200),
        }
    }

    fn name() -> SecretName {
        SecretName::for_pin("secret-", "1234")
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_name_make_one_backend_call() {
        let store = Arc::new(Scripted { delay: Duration::from_millis(50), ..Default::default() });
        store.set(Ok(Some("user1:pw")));
        let cache = Arc::new(SecretCache::new(store.clone(), &config(60_000, 0), Arc::default()));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.resolve(&name(), Staleness::FreshOnly).await })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Ok(Resolved::Found(_))));
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unknown_names_are_remembered_and_values_expire() {
        let store = Arc::new(Scripted::default());
        store.set(Ok(None));
        let cache = SecretCache::new(store.clone(), &config(300, 0), Arc::default());
        for _ in 0..5 {
            assert!(matches!(cache.resolve(&name(), Staleness::FreshOnly).await, Ok(Resolved::NotFound)));
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
        store.set(Ok(Some("user1:pw")));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(cache.resolve(&name(), Staleness::FreshOnly).await, Ok(Resolved::Found(_))));
    }

    #[tokio::test]
    async fn answers_asked_for_without_pause_still_expire_with_the_cache() {
        let store = Arc::new(Scripted::default());
        store.set(Ok(Some("user1:pw")));
        let cache = SecretCache::new(store.clone(), &config(200, 0), Arc::default());
        cache.resolve(&name(), Staleness::AllowStale).await.unwrap();
        store.set(Ok(None));
        // A session's requests, one every 20 ms: the answers kept in front of the
        // cache end with the cache entry they copy, not a second after the last ask.
        let started = std::time::Instant::now();
        let mut seen_gone = None;
        while started.elapsed() < Duration::from_millis(600) {
            if matches!(cache.resolve(&name(), Staleness::AllowStale).await, Ok(Resolved::NotFound)) {
                seen_gone.get_or_insert(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gone = seen_gone.expect("the deletion is seen");
        assert!(gone < Duration::from_millis(400), "seen after {gone:?}, the cache time being 200 ms");
        let calls = store.calls.load(Ordering::SeqCst);
        assert!(calls <= 4, "asks between expiries are answered from the cache: {calls} calls");
    }

    #[tokio::test]
    async fn outages_serve_the_last_good_value_to_sessions_only() {
        let store = Arc::new(Scripted::default());
        store.set(Ok(Some("user1:pw")));
        let cache = SecretCache::new(store.clone(), &config(100, 60_000), Arc::default());
        cache.resolve(&name(), Staleness::FreshOnly).await.unwrap();
        store.set(Err(BackendError::Unavailable("503".into())));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(matches!(cache.resolve(&name(), Staleness::AllowStale).await, Ok(Resolved::Found(_))));
        assert!(matches!(cache.resolve(&name(), Staleness::FreshOnly).await, Err(BackendError::Unavailable(_))));
        // A deletion is an answer, and ends the stale value too.
        store.set(Ok(None));
        assert!(matches!(cache.resolve(&name(), Staleness::AllowStale).await, Ok(Resolved::NotFound)));
        store.set(Err(BackendError::Throttled));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(cache.resolve(&name(), Staleness::AllowStale).await.is_err());
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_slow_backends_time_out() {
        let store = Arc::new(Scripted { delay: Duration::from_millis(400), ..Default::default() });
        store.set(Ok(Some("user1:pw")));
        let cache = SecretCache::new(store.clone(), &config(60_000, 0), Arc::default());
        assert_eq!(cache.resolve(&name(), Staleness::FreshOnly).await.unwrap_err(), BackendError::Timeout);
        assert_eq!(cache.resolve(&name(), Staleness::FreshOnly).await.unwrap_err(), BackendError::Timeout);
        assert_eq!(store.calls.load(Ordering::SeqCst), 2, "a failure is retried on the next request");
    }

    #[tokio::test]
    async fn invalid_values_answer_as_backend_errors() {
        let store = Arc::new(Scripted::default());
        store.set(Ok(Some("no colon here")));
        let cache = SecretCache::new(store.clone(), &config(60_000, 0), Arc::default());
        assert_eq!(cache.resolve(&name(), Staleness::FreshOnly).await.unwrap_err(), BackendError::InvalidValue);
        assert_eq!(cache.resolve(&name(), Staleness::FreshOnly).await.unwrap_err(), BackendError::InvalidValue);
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    }
}
