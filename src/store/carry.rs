//! State values carried from one processor step to the next, decoded.
//!
//! A step keeps what it reads decoded ([`super::StateBatch`]), but the next step started from
//! the engine again: every returning customer's identity bucket, contact, conversation and
//! ticket were read from the tree and decoded anew in each step they appeared in. The carry
//! keeps what committed steps read and wrote, bounded by weight, so that the next step finds
//! it here.
//!
//! It must never answer with anything but the committed state. Two rules keep it so:
//! - Every write of a carried key updates it, after the engine's commit and under its lock:
//!   a batch's commit replaces what it wrote, and journal retention's deletions
//!   ([`super::Store::journal_forget`]) remove what they deleted. A write that fails leaves
//!   the carry cleared, since the engine's state after it is not known here.
//! - What a batch only read is added at its commit, and only when no write was carried since
//!   the batch started (the generation below): a value read before another writer's commit
//!   would otherwise come back after it.
//!
//! Outbox events are not carried: written once and read only by the sinks, they would push
//! out everything a step reads again. Nor are the keys written once for one journal record
//! (a message's index entries, an outcome: [`keys::is_per_record`]), for the same reason.

use std::sync::{Arc, Mutex, MutexGuard};

use super::batch::Stored;
use super::{keys, Value};

/// What the carry may hold, in the encoded bytes of values and their keys. The decoded copies
/// beside the bytes are not counted (their size was not measured on its own).
const CARRY_BYTES: u64 = 4 << 20;
/// Entries expected at that weight, for the cache's sizing.
const CARRY_ENTRIES: usize = 8_192;
/// Weight charged per entry besides its bytes: the key's and the value's bookkeeping.
const ENTRY_OVERHEAD: u64 = 64;

/// A key's committed value as the carry holds it.
#[derive(Clone)]
pub(super) enum Carried {
    /// No value under the key.
    Absent,
    /// Bytes never decoded in a step (raw values: identity buckets).
    Bytes(Value),
    /// A value decoded by a step, with its stored bytes (a read as another type decodes those).
    Decoded {
        bytes: Value,
        value: Arc<dyn Stored + Send + Sync>,
    },
}

impl Carried {
    fn weight(&self) -> u64 {
        match self {
            Carried::Absent => 0,
            Carried::Bytes(bytes) | Carried::Decoded { bytes, .. } => bytes.len() as u64,
        }
    }
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<Vec<u8>, Carried> for Weigh {
    fn weight(&self, key: &Vec<u8>, value: &Carried) -> u64 {
        ENTRY_OVERHEAD + key.len() as u64 + value.weight()
    }
}

struct Inner {
    /// Counts carried writes: a batch's reads are added only when none came since it started.
    generation: u64,
    values: quick_cache::unsync::Cache<Vec<u8>, Carried, Weigh>,
}

/// The carried values, shared by every clone of the store.
pub(super) struct Carry(Mutex<Inner>);

impl Default for Carry {
    fn default() -> Self {
        Carry(Mutex::new(Inner {
            generation: 0,
            values: quick_cache::unsync::Cache::with_weighter(CARRY_ENTRIES, CARRY_BYTES, Weigh),
        }))
    }
}

/// Whether a key may be carried.
pub(super) fn carries(key: &[u8]) -> bool {
    !keys::is_outbox(key) && !keys::is_per_record(key)
}

impl Carry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every holder leaves the cache whole between its calls; a panicked holder's work is
        // at worst a value not added.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The generation a batch starting now reads from.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The committed value under `key`, if carried.
    pub(super) fn get(&self, key: &[u8]) -> Option<Carried> {
        self.lock().values.get(key).cloned()
    }

    /// After a batch committed: what it wrote replaces the carried values, and what it only
    /// read is added if no write was carried since `started`. Returns the generation after
    /// it.
    pub(super) fn committed(
        &self,
        started: u64,
        written: Vec<(Vec<u8>, Carried)>,
        read: Vec<(Vec<u8>, Carried)>,
    ) -> u64 {
        let mut inner = self.lock();
        if inner.generation == started {
            for (key, value) in read {
                inner.values.insert(key, value);
            }
        }
        if written.is_empty() {
            return inner.generation;
        }
        inner.generation += 1;
        for (key, value) in written {
            inner.values.insert(key, value);
        }
        inner.generation
    }

    /// After keys were deleted outside a batch.
    pub(super) fn removed(&self, keys: &[Vec<u8>]) {
        let mut inner = self.lock();
        inner.generation += 1;
        for key in keys {
            inner.values.remove(key.as_slice());
        }
    }

    /// After a write failed: what the engine holds is no longer known here.
    pub(super) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.values.clear();
    }
}
