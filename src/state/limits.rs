//! Brute-force defence: who the client is (`client`), per-client and global login
//! rates, lockouts that double up to a cap and the attack-mode budget (`memory`),
//! behind the `LimitStore` seam for a shared store (`store`). `budget` computes what
//! these limits allow an attacker.
//!
//! Memory stays bounded under address spraying: per-client state lives in LRU caches
//! of at most [`MAX_TRACKED_CLIENTS`] keys, so the least recently seen keys go first,
//! and idle keys expire once their state is back to "fresh". The global limit bounds
//! how fast anyone can churn the tables.

pub mod budget;
mod client;
mod gcra;
mod memory;
mod redis_store;
mod store;

use std::sync::Arc;

pub use client::{ClientKey, client_ip};
pub use memory::{MAX_TRACKED_CLIENTS, MemoryLimitStore};
pub use redis_store::RedisLimitStore;
pub use store::{
    AttackMode, Attempt, FailureOutcome, LimitStore, LimitsError, Lockout, Pending, Refusal, StoreHealth, Verdict,
    admit, lockout_duration, observe_attack_mode, retry_after_secs,
};

use crate::config::{LimitStoreKind, LimitsConfig};
use crate::observe::metrics::Metrics;
use crate::state::session::Revocations;

/// The store a config asks for. A shared store connects in the background and
/// feeds `revoked` with the other replicas' revocations (it needs a tokio runtime).
pub fn store_for(
    config: &LimitsConfig,
    metrics: Arc<Metrics>,
    revoked: Revocations,
) -> Result<Arc<dyn LimitStore>, LimitsError> {
    match &config.store {
        LimitStoreKind::Memory => Ok(Arc::new(MemoryLimitStore::new(config))),
        LimitStoreKind::Redis(url) => Ok(Arc::new(RedisLimitStore::open(url, config, metrics, revoked)?)),
    }
}
