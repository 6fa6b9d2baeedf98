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
mod memory;
mod store;

use std::sync::Arc;

pub use client::{ClientKey, client_ip};
pub use memory::{MAX_TRACKED_CLIENTS, MemoryLimitStore};
pub use store::{
    AttackMode, FailureOutcome, LimitStore, Lockout, lockout_duration, observe_attack_mode, retry_after_secs,
};

use crate::config::{LimitStoreKind, LimitsConfig};

/// Why the configured limit store cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("limits.store: a shared (redis) store is not available in this build; use \"memory\"")]
    SharedStoreUnavailable,
}

/// The store a config asks for.
pub fn store_for(config: &LimitsConfig) -> Result<Arc<dyn LimitStore>, LimitsError> {
    match &config.store {
        LimitStoreKind::Memory => Ok(Arc::new(MemoryLimitStore::new(config))),
        LimitStoreKind::Redis(_) => Err(LimitsError::SharedStoreUnavailable),
    }
}
