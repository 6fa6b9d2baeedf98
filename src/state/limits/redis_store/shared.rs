//! What the Redis store and its background task share: the connection, whether
//! Redis answers, what this replica last saw of the cluster's state (attack mode,
//! lockouts), and what waits to be sent while Redis is away (revocations, failures
//! already counted here), plus the names of every key and channel.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::ScriptInvocation;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use crate::config::LimitsConfig;
use crate::observe::metrics::Metrics;
use crate::state::limits::client::ClientKey;
use crate::state::session::Revocations;

/// The longest any call to Redis may take; past it the store counts as down.
pub const STORE_TIMEOUT: Duration = Duration::from_millis(200);
/// Most revocations and failures kept for sending while Redis is away.
pub const OUTBOX_CAPACITY: usize = 100_000;

/// Key and channel names: one namespace (`keypin:`) per Redis database.
pub mod names {
    use crate::state::limits::client::ClientKey;

    pub const GLOBAL_RATE: &str = "keypin:rate";
    pub const BUDGET: &str = "keypin:budget";
    pub const ATTACK: &str = "keypin:attack";
    pub const ALL_IN_FLIGHT: &str = "keypin:flight";
    pub const LOCKED: &str = "keypin:locked";
    pub const REVOKED: &str = "keypin:revoked";
    /// Where revocations are announced: `"<end> <session id>"`.
    pub const REVOCATIONS_CHANNEL: &str = "keypin:revocations";
    /// Where the start of attack mode is announced.
    pub const ATTACK_CHANNEL: &str = "keypin:attack-mode";
    /// Stands for the device's keys when the browser has none (never written).
    pub const NO_DEVICE: &str = "keypin:no-device";

    pub fn client_streak(key: ClientKey) -> String {
        format!("keypin:streak:c:{}", key.ip())
    }

    pub fn device_streak(device: &str) -> String {
        format!("keypin:streak:d:{device}")
    }

    pub fn client_in_flight(key: ClientKey) -> String {
        format!("keypin:flight:c:{}", key.ip())
    }

    pub fn device_in_flight(device: &str) -> String {
        format!("keypin:flight:d:{device}")
    }

    pub fn client_rate(key: ClientKey) -> String {
        format!("keypin:rate:c:{}", key.ip())
    }
}

/// A failure counted by this replica that Redis has not recorded yet.
#[derive(Debug, Clone)]
pub struct Unsent {
    pub key: ClientKey,
    pub device: Option<String>,
    pub id: String,
}

/// What waits for Redis to come back.
#[derive(Default)]
pub struct Outbox {
    /// `(session id, end)`.
    pub revocations: VecDeque<(String, u64)>,
    pub failures: VecDeque<Unsent>,
}

/// Attack mode and lockouts as this replica last saw them.
#[derive(Debug, Default)]
pub struct Mirror {
    pub attack_until: Option<Instant>,
    pub attack_failures: u64,
    pub lockouts: u64,
    /// Redis's count of evicted keys at the last look.
    pub evicted: Option<u64>,
}

pub struct Inner {
    /// The limits now (a reload replaces them); the scripts take them as arguments.
    pub config: Mutex<LimitsConfig>,
    pub conn: ConnectionManager,
    pub client: redis::Client,
    up: AtomicBool,
    pub metrics: Arc<Metrics>,
    pub revoked: Revocations,
    pub outbox: Mutex<Outbox>,
    /// Wakes the background task: something is in the outbox, or the store
    /// failed and should be looked at now.
    pub wake: Notify,
    pub mirror: Mutex<Mirror>,
    /// Redis evicted keys lately: attempts are refused until then, since evicted
    /// streaks would hand out guesses the budget does not allow.
    pub evicting_until: Mutex<Option<Instant>>,
}

impl Inner {
    pub fn new(
        config: &LimitsConfig,
        client: redis::Client,
        conn: ConnectionManager,
        metrics: Arc<Metrics>,
        revoked: Revocations,
    ) -> Self {
        metrics.store_up.set(0);
        Self {
            config: Mutex::new(config.clone()),
            conn,
            client,
            up: AtomicBool::new(false),
            metrics,
            revoked,
            outbox: Mutex::default(),
            wake: Notify::new(),
            mirror: Mutex::default(),
            evicting_until: Mutex::default(),
        }
    }

    /// Run one script (or command) within [`STORE_TIMEOUT`]; `None` when Redis
    /// failed, timed out or answered something else than `T`.
    pub async fn call<T: redis::FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Option<T> {
        let mut conn = self.conn.clone();
        self.answer(tokio::time::timeout(STORE_TIMEOUT, inv.invoke_async(&mut conn)).await)
    }

    pub async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.conn.clone();
        self.answer(tokio::time::timeout(STORE_TIMEOUT, cmd.query_async(&mut conn)).await)
    }

    fn answer<T>(&self, reply: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>) -> Option<T> {
        match reply {
            Ok(Ok(value)) => {
                self.answered();
                Some(value)
            }
            Ok(Err(e)) => {
                self.failed(&e);
                None
            }
            Err(elapsed) => {
                self.failed(&elapsed);
                None
            }
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A call answered.
    pub fn answered(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("the shared limit store answers: sign-ins resume");
            self.metrics.store_up.set(1);
        }
    }

    /// A call failed or timed out.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        self.metrics.store_errors.inc();
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(%error, "the shared limit store does not answer: sign-ins are refused until it does");
            self.metrics.store_up.set(0);
            self.wake.notify_one();
        }
    }

    pub fn evicting(&self) -> bool {
        self.evicting_until.lock().is_some_and(|until| until > Instant::now())
    }

    /// Keep `item` for sending later; the oldest goes (said in the log) when the
    /// outbox is full.
    pub fn queue<T>(queue: &mut VecDeque<T>, item: T, what: &'static str) {
        if queue.len() >= OUTBOX_CAPACITY {
            queue.pop_front();
            tracing::warn!(
                what,
                capacity = OUTBOX_CAPACITY,
                "the shared store's outbox is full: the oldest is not sent"
            );
        }
        queue.push_back(item);
    }
}
