//! `LimitStore` over Redis: every attempt is admitted and settled by one script,
//! atomically for all replicas; attack mode and lockouts are read from this
//! replica's mirror (refreshed each second and on announcements), so nothing on
//! the authenticated request path waits for Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManagerConfig;

use super::scripts;
use super::shared::{Inner, STORE_TIMEOUT, Unsent};
use super::sync;
use crate::config::LimitsConfig;
use crate::observe::metrics::Metrics;
use crate::state::limits::client::ClientKey;
use crate::state::limits::store::{
    AttackMode, Attempt, FailureOutcome, LimitStore, LimitsError, Lockout, Refusal, StoreHealth, Verdict,
};
use crate::state::secrets::BoxFuture;
use crate::state::session::{Revocations, random_token};

/// Random bytes of an attempt's id (unique among every replica's attempts).
const ATTEMPT_ID_BYTES: usize = 12;
/// Reconnection attempts back off up to this long between tries.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Limiter state in Redis, shared by every replica that uses the same one.
pub struct RedisLimitStore {
    inner: Arc<Inner>,
    /// Stops the background task when the last store over `inner` goes.
    _task: Arc<sync::Task>,
}

impl RedisLimitStore {
    /// Connect lazily to `url` (keypin starts while Redis is away, refusing
    /// sign-ins until it answers) and start mirroring it. Needs a tokio runtime.
    pub fn open(
        url: &str,
        config: &LimitsConfig,
        metrics: Arc<Metrics>,
        revoked: Revocations,
    ) -> Result<Self, LimitsError> {
        let client = redis::Client::open(url).map_err(|_| LimitsError::BadRedisUrl)?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(STORE_TIMEOUT))
            .set_response_timeout(Some(STORE_TIMEOUT))
            .set_max_delay(MAX_RECONNECT_DELAY);
        let conn = client.get_connection_manager_lazy(settings).map_err(|_| LimitsError::BadRedisUrl)?;
        let inner = Arc::new(Inner::new(config, client, conn, metrics, revoked));
        let task = Arc::new(sync::Task::start(&inner));
        Ok(Self { inner, _task: task })
    }

    /// For `check-config`: whether `url` makes a client (an error when not, as
    /// [`RedisLimitStore::open`] would), and a warning when its server does not
    /// answer a PING within `timeout` (keypin starts then, refusing sign-ins).
    pub fn check(url: &str, timeout: Duration) -> Result<Option<String>, LimitsError> {
        let client = redis::Client::open(url).map_err(|_| LimitsError::BadRedisUrl)?;
        let answer = client.get_connection_with_timeout(timeout).and_then(|mut conn| {
            conn.set_read_timeout(Some(timeout))?;
            redis::cmd("PING").query::<String>(&mut conn)
        });
        // The error's text may hold the URL (and so a password): only its kind is said.
        Ok(answer.err().map(|e| {
            let why = if e.is_timeout() {
                "did not answer in time"
            } else if e.is_connection_refusal() {
                "refused the connection"
            } else {
                "could not be used"
            };
            format!(
                "limits.store: the Redis server {why} (waited {}s); keypin starts without it but refuses \
                 sign-ins (503) until it answers",
                timeout.as_secs()
            )
        }))
    }

    fn config(&self) -> LimitsConfig {
        self.inner.config.lock().clone()
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn lockout(us: i64) -> Option<Lockout> {
    (us > 0).then(|| Lockout { duration: micros(us) })
}

impl LimitStore for RedisLimitStore {
    fn admit_attempt<'a>(&'a self, key: ClientKey, device: Option<&'a str>) -> BoxFuture<'a, Result<Attempt, Refusal>> {
        Box::pin(async move {
            if self.inner.evicting() {
                return Err(Refusal::StoreUnavailable);
            }
            let id = random_token(ATTEMPT_ID_BYTES);
            let inv = scripts::admit(&self.config(), key, device, &id);
            match self.inner.call::<(String, i64)>(&inv).await {
                Some((verdict, us)) => match verdict.as_str() {
                    "ok" => Ok(Attempt { key, device: device.map(str::to_owned), id }),
                    "wait" => Err(Refusal::Wait(micros(us))),
                    "attack" => Err(Refusal::AttackMode(micros(us))),
                    _ => {
                        self.inner.failed(&"an admission reply keypin does not know");
                        Err(Refusal::StoreUnavailable)
                    }
                },
                None => Err(Refusal::StoreUnavailable),
            }
        })
    }

    fn settle(&self, attempt: Attempt, verdict: Verdict) -> BoxFuture<'_, FailureOutcome> {
        Box::pin(async move {
            let inv = scripts::settle(&self.config(), attempt.key, attempt.device.as_deref(), &attempt.id, verdict);
            match self.inner.call::<(i64, i64, i64)>(&inv).await {
                Some((client, device, started)) => {
                    let outcome = FailureOutcome {
                        client_lockout: lockout(client),
                        device_lockout: lockout(device),
                        attack_mode_started: started == 1,
                    };
                    if outcome.attack_mode_started {
                        self.inner.wake.notify_one();
                    }
                    outcome
                }
                None => {
                    // A failure this replica saw is counted when Redis is back;
                    // the place it held runs out by itself.
                    if verdict == Verdict::Failed {
                        let unsent = Unsent { key: attempt.key, device: attempt.device, id: attempt.id };
                        Inner::queue(&mut self.inner.outbox.lock().failures, unsent, "failure");
                    }
                    FailureOutcome::default()
                }
            }
        })
    }

    fn attack_mode(&self) -> AttackMode {
        let now = Instant::now();
        let mut mirror = self.inner.mirror.lock();
        match mirror.attack_until {
            Some(until) if until > now => AttackMode::On(until - now),
            Some(_) => {
                mirror.attack_until = None;
                AttackMode::Ended { failures: std::mem::take(&mut mirror.attack_failures) }
            }
            None => AttackMode::Off,
        }
    }

    fn active_lockouts(&self) -> u64 {
        self.inner.mirror.lock().lockouts
    }

    fn share_revocation(&self, id: &str, until: u64) {
        Inner::queue(&mut self.inner.outbox.lock().revocations, (id.to_owned(), until), "revocation");
        self.inner.wake.notify_one();
    }

    fn health(&self) -> StoreHealth {
        if self.inner.is_up() { StoreHealth::Up } else { StoreHealth::Down }
    }

    fn reconfigure(&self, config: &LimitsConfig) -> Arc<dyn LimitStore> {
        *self.inner.config.lock() = config.clone();
        Arc::new(Self { inner: self.inner.clone(), _task: self._task.clone() })
    }
}
