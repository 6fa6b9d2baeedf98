//! The Redis store's background task: subscribed to the cluster's announcements
//! (revocations into the local table, the start of attack mode), it loads the
//! revocations still in force each time it (re)connects, mirrors attack mode and
//! lockouts once a second, watches for evictions, and sends what waited in the
//! outbox. It reconnects with backoff; keypin never needs a restart for Redis.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

use super::scripts;
use super::shared::names::{ATTACK_CHANNEL, REVOCATIONS_CHANNEL, REVOKED};
use super::shared::{Inner, STORE_TIMEOUT};
use crate::state::limits::store::Verdict;
use crate::state::session::now;

/// How often attack mode, lockouts and evictions are read.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Reconnection backoff: from…
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// …to at most.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Revocations loaded per round trip when (re)connecting.
const LOAD_CHUNK: usize = 10_000;
/// After Redis evicted keys, attempts are refused for this long (and longer while
/// evictions go on).
const EVICTION_HOLD: Duration = Duration::from_secs(10);
/// Connecting and subscribing may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The running task; dropping the last handle stops it.
pub struct Task(JoinHandle<()>);

impl Task {
    pub fn start(inner: &Arc<Inner>) -> Self {
        Self(tokio::spawn(run(Arc::downgrade(inner))))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout(#[from] tokio::time::error::Elapsed),
    #[error("the subscription ended")]
    Closed,
    #[error("the revocations could not be loaded")]
    Load,
}

async fn run(inner: Weak<Inner>) {
    let mut backoff = MIN_BACKOFF;
    let mut warned_policy = false;
    loop {
        let started = Instant::now();
        if let Err(e) = subscribed(&inner, &mut warned_policy).await {
            let Some(inner) = inner.upgrade() else { return };
            inner.failed(&e);
        }
        // A subscription that held a while starts the backoff over.
        if started.elapsed() > MAX_BACKOFF * 4 {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One subscription, from connecting until it breaks.
async fn subscribed(weak: &Weak<Inner>, warned_policy: &mut bool) -> Result<(), SyncError> {
    let client = weak.upgrade().ok_or(SyncError::Closed)?.client.clone();
    let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await??;
    tokio::time::timeout(CONNECT_TIMEOUT, pubsub.subscribe(&[REVOCATIONS_CHANNEL, ATTACK_CHANNEL])).await??;
    let mut messages = pubsub.into_on_message();
    // Subscribed first, loaded second: nothing revoked in between is missed.
    {
        let inner = weak.upgrade().ok_or(SyncError::Closed)?;
        load_revocations(&inner).await?;
        if !*warned_policy {
            *warned_policy = true;
            warn_on_eviction_policy(&inner).await;
        }
        flush(&inner).await;
        poll(&inner).await;
    }
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        let inner = weak.upgrade().ok_or(SyncError::Closed)?;
        tokio::select! {
            message = messages.next() => {
                let message = message.ok_or(SyncError::Closed)?;
                let payload = message.get_payload_bytes();
                if message.get_channel_name() == REVOCATIONS_CHANNEL {
                    receive_revocation(&inner, payload);
                } else {
                    poll(&inner).await;
                }
            }
            _ = tick.tick() => {
                poll(&inner).await;
                flush(&inner).await;
            }
            () = inner.wake.notified() => {
                flush(&inner).await;
                poll(&inner).await;
            }
        }
    }
}

/// `"<end> <session id>"`, as `revoke.lua` announces it.
fn receive_revocation(inner: &Inner, payload: &[u8]) {
    let parsed = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.split_once(' '))
        .and_then(|(until, id)| Some((until.parse::<u64>().ok()?, id)));
    match parsed {
        Some((until, id)) => inner.revoked.insert(id, until, now()),
        None => tracing::warn!(len = payload.len(), "an announced revocation keypin cannot read was ignored"),
    }
}

/// Every revocation still in force, into the local table.
async fn load_revocations(inner: &Inner) -> Result<(), SyncError> {
    let mut offset = 0;
    loop {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(REVOKED).arg(now()).arg("+inf").arg("BYSCORE").arg("LIMIT").arg(offset).arg(LOAD_CHUNK);
        cmd.arg("WITHSCORES");
        let chunk: Vec<(String, u64)> = inner.command(&cmd).await.ok_or(SyncError::Load)?;
        let at = now();
        for (id, until) in &chunk {
            inner.revoked.insert(id, *until, at);
        }
        if chunk.len() < LOAD_CHUNK {
            return Ok(());
        }
        offset += LOAD_CHUNK;
    }
}

/// Send what waited: revocations first, then failures to count.
async fn flush(inner: &Inner) {
    loop {
        let next = inner.outbox.lock().revocations.front().cloned();
        let Some((id, until)) = next else { break };
        if inner.call::<i64>(&scripts::revoke(&id, until)).await.is_none() {
            return;
        }
        inner.outbox.lock().revocations.pop_front();
    }
    loop {
        let next = inner.outbox.lock().failures.front().cloned();
        let Some(unsent) = next else { break };
        let config = inner.config.lock().clone();
        let inv = scripts::settle(&config, unsent.key, unsent.device.as_deref(), &unsent.id, Verdict::Failed);
        if inner.call::<(i64, i64, i64)>(&inv).await.is_none() {
            return;
        }
        inner.outbox.lock().failures.pop_front();
    }
}

/// Mirror attack mode and lockouts; watch evictions.
async fn poll(inner: &Inner) {
    if let Some((left, failures, lockouts)) = inner.call::<(u64, u64, u64)>(&scripts::observe()).await {
        let now = Instant::now();
        let mut mirror = inner.mirror.lock();
        mirror.lockouts = lockouts;
        if left > 0 {
            mirror.attack_until = Some(now + Duration::from_micros(left));
            mirror.attack_failures = failures;
        } else if mirror.attack_until.is_some_and(|until| until > now) {
            // Ended on the cluster: reported here at the next look.
            mirror.attack_until = Some(now);
        }
    }
    let mut info = redis::cmd("INFO");
    info.arg("stats");
    if let Some(stats) = inner.command::<String>(&info).await {
        let evicted = stats.lines().find_map(|l| l.strip_prefix("evicted_keys:")?.trim().parse::<u64>().ok());
        let mut mirror = inner.mirror.lock();
        if let (Some(was), Some(is)) = (mirror.evicted, evicted)
            && is > was
        {
            tracing::error!(
                evicted = is - was,
                "Redis is evicting keys: sign-ins are refused while it does (set maxmemory-policy noeviction, or more memory)"
            );
            *inner.evicting_until.lock() = Some(Instant::now() + EVICTION_HOLD);
        }
        mirror.evicted = evicted.or(mirror.evicted);
    }
}

/// Say so once when Redis may evict keys under memory pressure.
async fn warn_on_eviction_policy(inner: &Inner) {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    let mut conn = inner.conn.clone();
    let reply: Result<Result<Vec<String>, _>, _> =
        tokio::time::timeout(STORE_TIMEOUT, cmd.query_async(&mut conn)).await;
    if let Ok(Ok(pair)) = reply
        && let Some(policy) = pair.get(1)
        && policy != "noeviction"
    {
        tracing::warn!(
            policy,
            "Redis may evict keys under memory pressure; keypin then refuses sign-ins until it stops. \
             Prefer maxmemory-policy noeviction"
        );
    }
}
