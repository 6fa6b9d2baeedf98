//! The shared limit store (`limits.store = "redis://…"`): per-client and global
//! login rates, lockouts, the failure budget and attack mode live in Redis (or
//! Valkey), changed only by keypin's scripts, one atomic step per attempt; logout
//! revocations are announced to every replica and kept for those that join later.
//! `shared` is what the store (`store`) and its background task (`sync`) share;
//! `scripts` holds the Lua.

mod scripts;
mod shared;
mod store;
mod sync;

pub use store::RedisLimitStore;
