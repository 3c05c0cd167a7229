//! A processor step's writes, buffered so that reads see them and one atomic batch commits them.
//!
//! The batch keeps values decoded: a step of a few hundred messages reads and rewrites the same
//! conversation, ticket and counters again and again (a thread's messages arrive together), and
//! going through JSON for each of those reads and writes was most of the processor's time. A
//! value written is encoded once, when the batch commits; a value read from the engine is
//! decoded once and kept for the rest of the step (the committed state does not change while
//! a batch is open: the processor is its only writer, and a backup holds the write gate).
//! What a committed step read and wrote is carried to the next steps ([`super::carry`]).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::carry::{self, Carried};
use super::{decode, encode, KeyName, StateOps, Store, StoreError, Value};

/// What the state stores: values the batch can decode, keep, copy, encode again and carry to
/// the next step.
pub trait StateValue: DeserializeOwned + Serialize + Clone + Send + Sync + 'static {}

impl<T: DeserializeOwned + Serialize + Clone + Send + Sync + 'static> StateValue for T {}

/// A value the batch can keep decoded and encode when it commits.
pub(super) trait Stored: Any {
    fn encode(&self) -> Vec<u8>;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Serialize + Any> Stored for T {
    fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A key's value as the batch knows it.
enum Slot {
    /// None: removed by this batch, or absent from the committed state.
    Absent,
    /// Written raw by [`StateBatch::put_raw`].
    Bytes(Vec<u8>),
    /// Read from the committed state and not yet decoded.
    Stored(Value),
    /// Written by [`StateBatch::put`]: its encoding is what the batch commits.
    Value(Box<dyn Stored + Send + Sync>),
    /// Read from the committed state and decoded. The stored bytes stay beside the value: a
    /// read as another type decodes them, not the value's encoding, which holds only what the
    /// first type knew of them.
    Read {
        bytes: Value,
        value: Arc<dyn Stored + Send + Sync>,
    },
}

impl Slot {
    fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Slot::Absent => None,
            Slot::Bytes(bytes) => Some(bytes.clone()),
            Slot::Stored(bytes) | Slot::Read { bytes, .. } => Some(bytes.to_vec()),
            Slot::Value(value) => Some(value.encode()),
        }
    }

    fn carried(carried: Carried) -> Slot {
        match carried {
            Carried::Absent => Slot::Absent,
            Carried::Bytes(bytes) => Slot::Stored(bytes),
            Carried::Decoded { bytes, value } => Slot::Read { bytes, value },
        }
    }
}

/// A key the batch has written, or read and kept.
struct Entry {
    slot: Slot,
    /// Whether the batch wrote it (and commits it), or only read it from the committed state.
    written: bool,
    /// Read from the carry as it is now: the commit need not carry it again. A value the carry
    /// held as bytes and the batch decoded is carried again, decoded.
    carried: bool,
}

pub struct StateBatch<'a> {
    store: &'a Store,
    /// Every key the batch wrote or read, with its value as the batch would leave it. Entries
    /// only read agree with the committed state, so the key listings below can take every
    /// entry as it is.
    entries: RefCell<BTreeMap<Vec<u8>, Entry>>,
    /// What each write replaced in `entries`, so that a failed sub-step can be undone without
    /// copying the whole buffer.
    undo: Vec<(Vec<u8>, Option<Entry>)>,
    /// Counters of effects, incremented once the batch commits: a step rolled back or retried
    /// counts nothing.
    counts: Vec<Count>,
    /// The first committed key at or after each start [`StateBatch::may_hold_range`] was asked
    /// about. The committed state does not change while a batch is open, so one read serves
    /// the whole step.
    first_committed: RefCell<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// What this batch asked of the engine and of itself, added to the store's [`StateOps`]
    /// when it commits.
    ops: Cell<StateOps>,
    /// The carry's generation when the batch started: what it read may be carried only if
    /// no write was carried since.
    carry_generation: u64,
}

/// An increment of a Prometheus counter, waiting for its batch to commit.
struct Count {
    name: &'static str,
    labels: Vec<metrics::Label>,
    by: u64,
}

/// A point in a batch to roll back to.
#[derive(Debug, Clone, Copy)]
pub struct Savepoint {
    undo: usize,
    counts: usize,
}

impl<'a> StateBatch<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        StateBatch {
            store,
            entries: RefCell::default(),
            undo: Vec::new(),
            counts: Vec::new(),
            first_committed: RefCell::default(),
            ops: Cell::default(),
            carry_generation: store.carry.generation(),
        }
    }

    fn tally(&self, add: impl FnOnce(&mut StateOps)) {
        let mut ops = self.ops.get();
        add(&mut ops);
        self.ops.set(ops);
    }

    /// Runs `f` on `key`'s entry, reading it from the carry or the engine first (and keeping
    /// what it found) when the batch does not know it yet.
    fn with_entry<R>(&self, key: &[u8], f: impl FnOnce(&mut Entry) -> R) -> Result<R, StoreError> {
        let mut entries = self.entries.borrow_mut();
        if let Some(entry) = entries.get_mut(key) {
            self.tally(|ops| ops.buffered_reads += 1);
            return Ok(f(entry));
        }
        let (slot, carried) = match self.store.carry.get(key) {
            Some(carried) => {
                self.tally(|ops| ops.carried_reads += 1);
                (Slot::carried(carried), true)
            }
            None => {
                self.tally(|ops| ops.engine_reads += 1);
                let slot = match self.store.tree(key).get(key)? {
                    Some(bytes) => Slot::Stored(bytes),
                    None => Slot::Absent,
                };
                (slot, false)
            }
        };
        let entry = entries.entry(key.to_vec()).or_insert(Entry {
            slot,
            written: false,
            carried,
        });
        Ok(f(entry))
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_entry(key, |entry| entry.slot.bytes())
    }

    /// Whether `key` holds a value, without copying it.
    pub fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.with_entry(key, |entry| !matches!(entry.slot, Slot::Absent))
    }

    /// The value under `key`, decoded once per batch: later reads get a copy of the decoded
    /// value.
    pub fn get<T: StateValue>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.read(key, T::clone)
    }

    /// What `f` makes of the value under `key`, without copying the value. `f` runs while the
    /// batch's entries are borrowed: it must not use the batch.
    pub fn read<T: StateValue, R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&T) -> R,
    ) -> Result<Option<R>, StoreError> {
        self.with_entry(key, |entry| {
            let decoded: T = match &entry.slot {
                Slot::Absent => return Ok(None),
                Slot::Value(value) => match value.as_any().downcast_ref::<T>() {
                    Some(value) => return Ok(Some(f(value))),
                    // Written as one type and read as another: through its encoding.
                    None => return decode(&KeyName(key), &value.encode()).map(|v| Some(f(&v))),
                },
                Slot::Read { bytes, value } => match value.as_any().downcast_ref::<T>() {
                    Some(value) => return Ok(Some(f(value))),
                    None => return decode(&KeyName(key), bytes).map(|v| Some(f(&v))),
                },
                // Bytes the batch wrote raw are committed as they are, so they stay bytes.
                Slot::Bytes(bytes) => return decode(&KeyName(key), bytes).map(|v| Some(f(&v))),
                Slot::Stored(bytes) => decode(&KeyName(key), bytes)?,
            };
            let answer = f(&decoded);
            if let Slot::Stored(bytes) = &entry.slot {
                entry.slot = Slot::Read {
                    bytes: bytes.clone(),
                    value: Arc::new(decoded),
                };
                // Decoded now: worth carrying again so that later steps need not decode it.
                entry.carried = false;
            }
            Ok(Some(answer))
        })?
    }

    /// Keys under `prefix`, in order, as this batch would leave them (its own writes and
    /// removals included).
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tally(|ops| ops.scans += 1);
        let mut keys = std::collections::BTreeSet::new();
        for entry in self.store.tree(prefix).prefix(prefix) {
            keys.insert(entry.key()?.to_vec());
        }
        for (key, entry) in self.entries.borrow().range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match entry.slot {
                Slot::Absent => keys.remove(key),
                _ => keys.insert(key.clone()),
            };
        }
        Ok(keys.into_iter().collect())
    }

    /// Whether `start..end` may hold a key, as this batch would leave the state: false means
    /// certainly none. Cheap after its first call for a given `start` in a batch (a step asks
    /// for every record, and the answer is nearly always no), where [`StateBatch::keys_in_range`]
    /// reads the tree each time.
    pub fn may_hold_range(&self, start: &[u8], end: &[u8]) -> Result<bool, StoreError> {
        let present = self
            .entries
            .borrow()
            .range(start.to_vec()..end.to_vec())
            .any(|(_, entry)| !matches!(entry.slot, Slot::Absent));
        if present {
            return Ok(true);
        }
        let mut cache = self.first_committed.borrow_mut();
        let first = match cache.get(start) {
            Some(first) => first.clone(),
            None => {
                self.tally(|ops| ops.scans += 1);
                let first = match self.store.tree(start).range(start..).next() {
                    Some(entry) => Some(entry.key()?.to_vec()),
                    None => None,
                };
                cache.insert(start.to_vec(), first.clone());
                first
            }
        };
        // A committed key this batch removed still answers "may": the caller's full read then
        // sees the removal.
        Ok(first.is_some_and(|key| key.as_slice() < end))
    }

    /// The first `limit` keys in `start..end`, in order, with this batch's writes applied.
    pub fn keys_in_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tally(|ops| ops.scans += 1);
        let entries = self.entries.borrow();
        let known = entries.range(start.to_vec()..end.to_vec());
        // Each key this batch knows absent may hide one of the tree's first keys.
        let absent = known
            .clone()
            .filter(|(_, entry)| matches!(entry.slot, Slot::Absent))
            .count();
        let mut keys = std::collections::BTreeSet::new();
        for entry in self
            .store
            .tree(start)
            .range(start..end)
            .take(limit + absent)
        {
            keys.insert(entry.key()?.to_vec());
        }
        for (key, entry) in known {
            match entry.slot {
                Slot::Absent => keys.remove(key),
                _ => keys.insert(key.clone()),
            };
        }
        Ok(keys.into_iter().take(limit).collect())
    }

    /// Writes `value` under `key`; it is kept decoded and encoded when the batch commits.
    pub fn put<T: Serialize + Clone + Send + Sync + 'static>(&mut self, key: Vec<u8>, value: &T) {
        self.write(key, Slot::Value(Box::new(value.clone())));
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Slot::Bytes(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.write(key, Slot::Absent);
    }

    fn write(&mut self, key: Vec<u8>, slot: Slot) {
        self.ops.get_mut().puts += 1;
        let entry = Entry {
            slot,
            written: true,
            carried: false,
        };
        let previous = self.entries.get_mut().insert(key.clone(), entry);
        self.undo.push((key, previous));
    }

    /// Reads a u64 counter, 0 when absent.
    pub fn get_u64(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self.get::<u64>(key)?.unwrap_or(0))
    }

    /// Increments a counter and returns the new value.
    pub fn next(&mut self, key: &[u8]) -> Result<u64, StoreError> {
        let value = self.get_u64(key)? + 1;
        self.put(key.to_vec(), &value);
        Ok(value)
    }

    /// Counts an effect of this batch in the counter `name` (with its labels), once the batch
    /// has committed.
    pub fn count(&mut self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let labels = labels
            .iter()
            .map(|(key, value)| metrics::Label::new(*key, value.to_string()))
            .collect();
        self.counts.push(Count { name, labels, by });
    }

    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            undo: self.undo.len(),
            counts: self.counts.len(),
        }
    }

    /// Undoes every write (and count) made since the savepoint. What was only read stays
    /// known: it is the committed state, which no rollback changes.
    pub fn rollback_to(&mut self, savepoint: Savepoint) {
        self.counts.truncate(savepoint.counts);
        let entries = self.entries.get_mut();
        while self.undo.len() > savepoint.undo {
            let Some((key, previous)) = self.undo.pop() else {
                break;
            };
            match previous {
                Some(entry) => entries.insert(key, entry),
                None => entries.remove(&key),
            };
        }
    }

    /// Writes everything atomically (not yet flushed), and carries what the batch read and
    /// wrote to the next batches.
    pub fn commit(self) -> Result<(), StoreError> {
        let carry = &self.store.carry;
        let mut ops = self.ops.get();
        ops.steps = 1;
        let mut batch = self.store.db.batch();
        let (mut written, mut read) = (Vec::new(), Vec::new());
        for (key, entry) in self.entries.into_inner() {
            if entry.written {
                ops.written += 1;
            }
            let carried = match entry.slot {
                Slot::Absent => {
                    if entry.written {
                        batch.remove(self.store.tree(&key), key.clone());
                    }
                    Carried::Absent
                }
                Slot::Bytes(bytes) => Carried::Bytes(Value::from(bytes)),
                Slot::Stored(bytes) => Carried::Bytes(bytes),
                Slot::Value(value) => Carried::Decoded {
                    bytes: Value::from(value.encode()),
                    value: Arc::from(value),
                },
                Slot::Read { bytes, value } => Carried::Decoded { bytes, value },
            };
            if entry.written {
                if let Carried::Bytes(bytes) | Carried::Decoded { bytes, .. } = &carried {
                    batch.insert(self.store.tree(&key), key.clone(), bytes.clone());
                }
            }
            if carry::carries(&key) {
                match (entry.written, entry.carried) {
                    (true, _) => written.push((key, carried)),
                    (false, false) => read.push((key, carried)),
                    // The carry holds it as read, and its own lookup counted the use.
                    (false, true) => {}
                }
            }
        }
        if let Err(error) = self.store.wrote(batch.commit()) {
            carry.clear();
            return Err(error);
        }
        carry.committed(self.carry_generation, written, read);
        self.store.ops.add(&ops);
        for count in self.counts {
            metrics::counter!(count.name, count.labels).increment(count.by);
        }
        Ok(())
    }
}
