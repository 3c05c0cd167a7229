//! A processor step's writes, buffered so that reads see them and one atomic batch commits them.
//!
//! The batch keeps values decoded: a step of a few hundred messages reads and rewrites the same
//! conversation, ticket and counters again and again (a thread's messages arrive together), and
//! going through JSON for each of those reads and writes was most of the processor's time. A
//! value written is encoded once, when the batch commits; a value read from the engine is
//! decoded once and kept for the rest of the step (the committed state does not change while
//! a batch is open: the processor is its only writer, and a backup holds the write gate).
//! What a committed step read and wrote is carried to the next steps ([`super::carry`]).
//!
//! A batch can also be sealed ([`StateBatch::seal`]) and committed on another thread while
//! the next step runs: that step starts from the sealed one's [`Seed`] (what it wrote and
//! read), so it reads the state as the sealed batch leaves it, landed or not.

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
    Value(Arc<dyn Stored + Send + Sync>),
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

/// What a read found, as the carry keeps it.
fn found(slot: &Slot) -> Carried {
    match slot {
        Slot::Absent => Carried::Absent,
        Slot::Bytes(bytes) => Carried::Bytes(Value::from(bytes.as_slice())),
        Slot::Stored(bytes) => Carried::Bytes(bytes.clone()),
        Slot::Value(value) => Carried::Decoded {
            bytes: Value::from(value.encode()),
            value: value.clone(),
        },
        Slot::Read { bytes, value } => Carried::Decoded {
            bytes: bytes.clone(),
            value: value.clone(),
        },
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
    /// Handed over by the step before (its [`Seed`]): not handed on again, since that step
    /// has landed by the time the step after this one starts.
    seeded: bool,
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
    /// Started from a sealed batch's [`Seed`], possibly before that batch landed.
    behind: bool,
}

impl Entry {
    /// A sealed batch's entry as the step after it starts with it: known, not written, and
    /// carried once the sealed batch lands.
    fn handed_on(slot: Slot) -> Entry {
        Entry {
            slot,
            written: false,
            carried: true,
            seeded: true,
        }
    }
}

/// What a sealed batch wrote and read, for the step after it to start from (see the module
/// docs). Valid only while the processor keeps every other writer out (the write gate): it
/// stands for state the engine may not have yet.
pub struct Seed(BTreeMap<Vec<u8>, Entry>);

/// A key's value as a sealed batch writes it.
enum Write {
    Absent,
    Bytes(Value),
    Value(Arc<dyn Stored + Send + Sync>),
}

/// A step's batch with its writes gathered, ready to commit ([`SealedBatch::land`]) on any
/// thread.
pub struct SealedBatch {
    /// Written keys, in key order.
    writes: Vec<(Vec<u8>, Write)>,
    /// Keys only read, with what was found, to carry.
    read: Vec<(Vec<u8>, Carried)>,
    ops: StateOps,
    counts: Vec<Count>,
    carry_generation: u64,
    behind: bool,
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
            behind: false,
        }
    }

    /// A batch that starts from what a sealed batch writes, committed or not.
    pub(super) fn after(store: &'a Store, seed: Seed) -> Self {
        let mut batch = StateBatch::new(store);
        *batch.entries.get_mut() = seed.0;
        batch.behind = true;
        batch
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
            seeded: false,
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
        self.write(key, Slot::Value(Arc::new(value.clone())));
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
            seeded: false,
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
        let store = self.store;
        self.gather(false).0.land(store, None).map(|_| ())
    }

    /// Gathers the writes for [`SealedBatch::land`], and the [`Seed`] for the next step to
    /// start from while they land.
    pub fn seal(self) -> (SealedBatch, Seed) {
        let (sealed, seed) = self.gather(true);
        (sealed, Seed(seed))
    }

    fn gather(self, seeding: bool) -> (SealedBatch, BTreeMap<Vec<u8>, Entry>) {
        let mut ops = self.ops.get();
        ops.steps = 1;
        let (mut writes, mut read, mut seed) = (Vec::new(), Vec::new(), BTreeMap::new());
        for (key, entry) in self.entries.into_inner() {
            if !entry.written {
                if !entry.carried && carry::carries(&key) {
                    read.push((key.clone(), found(&entry.slot)));
                }
                // What this step read is the committed state too: the step after need not
                // read it again before this one's reads are carried.
                if seeding && !entry.seeded {
                    seed.insert(key, Entry::handed_on(entry.slot));
                }
                continue;
            }
            ops.written += 1;
            let (write, kept) = match entry.slot {
                Slot::Absent => (Write::Absent, Slot::Absent),
                Slot::Bytes(bytes) => {
                    let bytes = Value::from(bytes);
                    (Write::Bytes(bytes.clone()), Slot::Stored(bytes))
                }
                Slot::Stored(bytes) => (Write::Bytes(bytes.clone()), Slot::Stored(bytes)),
                Slot::Value(value) => (Write::Value(value.clone()), Slot::Value(value)),
                Slot::Read { bytes, value } => {
                    (Write::Bytes(bytes.clone()), Slot::Read { bytes, value })
                }
            };
            if seeding {
                seed.insert(key.clone(), Entry::handed_on(kept));
            }
            writes.push((key, write));
        }
        let sealed = SealedBatch {
            writes,
            read,
            ops,
            counts: self.counts,
            carry_generation: self.carry_generation,
            behind: self.behind,
        };
        (sealed, seed)
    }
}

impl SealedBatch {
    /// Writes everything atomically (not yet flushed), and carries what the batch read and
    /// wrote to the next batches. `after` is the carry's generation once the batch this one
    /// started behind landed (see [`StateBatch::seal`]): the reads of a batch that started
    /// from a seed stay true after that batch lands. Returns the carry's generation now.
    pub fn land(self, store: &Store, after: Option<u64>) -> Result<u64, StoreError> {
        let carry = &store.carry;
        let mut batch = store.db.batch();
        let mut written = Vec::new();
        for (key, write) in self.writes {
            let carried = match write {
                Write::Absent => {
                    batch.remove(store.tree(&key), key.clone());
                    Carried::Absent
                }
                Write::Bytes(bytes) => {
                    batch.insert(store.tree(&key), key.clone(), bytes.clone());
                    Carried::Bytes(bytes)
                }
                Write::Value(value) => {
                    let bytes = Value::from(value.encode());
                    batch.insert(store.tree(&key), key.clone(), bytes.clone());
                    Carried::Decoded { bytes, value }
                }
            };
            if carry::carries(&key) {
                written.push((key, carried));
            }
        }
        if let Err(error) = store.wrote(batch.commit()) {
            carry.clear();
            return Err(error);
        }
        let started = match after {
            Some(generation) if self.behind => generation,
            _ => self.carry_generation,
        };
        let generation = carry.committed(started, written, self.read);
        store.ops.add(&self.ops);
        for count in self.counts {
            metrics::counter!(count.name, count.labels).increment(count.by);
        }
        Ok(generation)
    }
}
