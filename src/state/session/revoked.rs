//! Session ids ended on the server (logout, a secret gone or given to someone
//! else), each kept exactly as long as its session could still open: its absolute
//! end. Entries are compact (the id's 16 random bytes and an end time). None is
//! ever dropped to make room: when the table is full, new sign-ins are refused
//! (loudly) until old entries run out, so a logout always revokes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use parking_lot::RwLock;

/// Revoked sessions remembered at most before sign-ins are refused.
pub const MAX_REVOKED: usize = 1_000_000;

/// A session id in compact form: the random bytes keypin minted it from; an id
/// of another shape (never minted by keypin) is folded into 16 bytes.
type Compact = [u8; 16];

fn compact(id: &str) -> Compact {
    let mut out = [0u8; 16];
    match BASE64URL.decode(id) {
        Ok(bytes) if bytes.len() == 16 => out.copy_from_slice(&bytes),
        _ => {
            for (i, b) in id.bytes().enumerate() {
                out[i % 16] = out[i % 16].rotate_left(3) ^ b;
            }
        }
    }
    out
}

#[derive(Default)]
struct Table {
    /// Id → Unix second its session ends.
    ends: HashMap<Compact, u64>,
    /// When the next sweep of ended entries is due.
    next_sweep: u64,
}

/// The revocation table, shared by every configuration that is reloaded (and fed
/// by the other replicas through a shared store).
#[derive(Clone)]
pub struct Revocations {
    table: Arc<RwLock<Table>>,
    /// Entries now, read without the lock on the request path.
    len: Arc<AtomicUsize>,
    capacity: usize,
}

impl Default for Revocations {
    fn default() -> Self {
        Self::with_capacity(MAX_REVOKED)
    }
}

impl Revocations {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { table: Arc::default(), len: Arc::default(), capacity }
    }

    /// Revoke `id` until `until` (Unix seconds), at `now`. Always kept.
    pub fn insert(&self, id: &str, until: u64, now: u64) {
        if until <= now {
            return;
        }
        let mut table = self.table.write();
        let end = table.ends.entry(compact(id)).or_default();
        *end = (*end).max(until);
        if now >= table.next_sweep || table.ends.len() >= self.capacity {
            table.ends.retain(|_, end| *end > now);
            table.next_sweep = now + 60;
        }
        self.len.store(table.ends.len(), Ordering::Relaxed);
    }

    pub fn contains(&self, id: &str) -> bool {
        self.len.load(Ordering::Relaxed) > 0 && self.table.read().ends.contains_key(&compact(id))
    }

    /// Full: a new session could not be revoked without dropping another's
    /// revocation, so none may be signed in until entries run out.
    pub fn is_full(&self, now: u64) -> bool {
        if self.len.load(Ordering::Relaxed) < self.capacity {
            return false;
        }
        let mut table = self.table.write();
        table.ends.retain(|_, end| *end > now);
        self.len.store(table.ends.len(), Ordering::Relaxed);
        table.ends.len() >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> String {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        BASE64URL.encode(bytes)
    }

    #[test]
    fn a_full_table_drops_no_revocation_and_says_so() {
        let table = Revocations::with_capacity(100);
        for i in 0..100 {
            table.insert(&id(i), 10_000, 1_000);
        }
        assert!(table.is_full(1_000), "full: sign-ins are refused");
        table.insert(&id(100), 10_000, 1_000);
        assert!((0..=100).all(|i| table.contains(&id(i))), "every revocation holds, the newest included");
        assert!(!table.contains(&id(101)));
    }

    #[test]
    fn a_revocation_is_kept_as_long_as_its_session_could_open() {
        let table = Revocations::with_capacity(2);
        table.insert(&id(1), 2_000, 1_000);
        table.insert(&id(2), 5_000, 1_000);
        assert!(table.is_full(1_999));
        assert!(!table.is_full(2_000), "the first session has ended: its entry goes");
        assert!(!table.contains(&id(1)) && table.contains(&id(2)));
        table.insert(&id(3), 900, 1_000);
        assert!(!table.contains(&id(3)), "a session already ended needs no entry");
    }

    #[test]
    fn ids_of_any_shape_are_compared_whole() {
        let table = Revocations::default();
        table.insert("not-a-minted-id", 10, 1);
        assert!(table.contains("not-a-minted-id"));
        assert!(!table.contains("not-a-minted-ie") && !table.contains(&id(0)));
    }
}
