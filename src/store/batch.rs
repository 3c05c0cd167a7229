//! A processor step's writes, buffered so that reads see them and one atomic batch commits them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode, encode, KeyName, StateOps, Store, StoreError};

/// A pending write: `Some(value)` or `None` for a removal.
type Pending = Option<Vec<u8>>;

pub struct StateBatch<'a> {
    store: &'a Store,
    writes: BTreeMap<Vec<u8>, Pending>,
    /// What each write replaced in `writes`, so that a failed sub-step can be undone without
    /// copying the whole buffer.
    undo: Vec<(Vec<u8>, Option<Pending>)>,
    /// Counters of effects, incremented once the batch commits: a step rolled back or retried
    /// counts nothing.
    counts: Vec<Count>,
    /// The first committed key at or after each start [`StateBatch::may_hold_range`] was asked
    /// about. The committed state does not change while a batch is open, so one read serves
    /// the whole step.
    first_committed: RefCell<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// What this batch asked of the engine and of itself, added to the store's
    /// [`StateOps`] when it commits.
    ops: Cell<StateOps>,
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
            writes: BTreeMap::new(),
            undo: Vec::new(),
            counts: Vec::new(),
            first_committed: RefCell::default(),
            ops: Cell::default(),
        }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(pending) => {
                self.tally(|ops| ops.buffered_reads += 1);
                Ok(pending.clone())
            }
            None => {
                self.tally(|ops| ops.engine_reads += 1);
                Ok(self.store.state.get(key)?.map(|v| v.to_vec()))
            }
        }
    }

    fn tally(&self, add: impl FnOnce(&mut StateOps)) {
        let mut ops = self.ops.get();
        add(&mut ops);
        self.ops.set(ops);
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        // Decoded where the bytes are: a read is the processor's commonest operation.
        let pending = self.writes.get(key);
        self.tally(|ops| match pending {
            Some(_) => ops.buffered_reads += 1,
            None => ops.engine_reads += 1,
        });
        match pending {
            Some(Some(bytes)) => decode(&KeyName(key), bytes).map(Some),
            Some(None) => Ok(None),
            None => match self.store.state.get(key)? {
                Some(bytes) => decode(&KeyName(key), &bytes).map(Some),
                None => Ok(None),
            },
        }
    }

    /// Keys under `prefix`, in order, as this batch would leave them (its own writes and
    /// removals included).
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tally(|ops| ops.scans += 1);
        let mut keys = std::collections::BTreeSet::new();
        for entry in self.store.state.prefix(prefix) {
            keys.insert(entry.key()?.to_vec());
        }
        for (key, pending) in self.writes.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match pending {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        Ok(keys.into_iter().collect())
    }

    /// Whether `start..end` may hold a key, as this batch would leave the state: false means
    /// certainly none. Cheap after its first call for a given `start` in a batch (a step asks
    /// for every record, and the answer is nearly always no), where [`StateBatch::keys_in_range`]
    /// reads the tree each time.
    pub fn may_hold_range(&self, start: &[u8], end: &[u8]) -> Result<bool, StoreError> {
        let pending = self.writes.range(start.to_vec()..end.to_vec());
        if pending.into_iter().any(|(_, write)| write.is_some()) {
            return Ok(true);
        }
        let mut cache = self.first_committed.borrow_mut();
        let first = match cache.get(start) {
            Some(first) => first.clone(),
            None => {
                self.tally(|ops| ops.scans += 1);
                let first = match self.store.state.range(start..).next() {
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
        let pending = self.writes.range(start.to_vec()..end.to_vec());
        // Each removal this batch made may hide one of the tree's first keys.
        let removed = pending.clone().filter(|(_, write)| write.is_none()).count();
        let mut keys = std::collections::BTreeSet::new();
        for entry in self.store.state.range(start..end).take(limit + removed) {
            keys.insert(entry.key()?.to_vec());
        }
        for (key, write) in pending {
            match write {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        Ok(keys.into_iter().take(limit).collect())
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.write(key, Some(encode(value)));
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    fn write(&mut self, key: Vec<u8>, value: Pending) {
        self.ops.get_mut().puts += 1;
        let previous = self.writes.insert(key.clone(), value);
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

    /// Undoes every write (and count) made since the savepoint.
    pub fn rollback_to(&mut self, savepoint: Savepoint) {
        self.counts.truncate(savepoint.counts);
        while self.undo.len() > savepoint.undo {
            let Some((key, previous)) = self.undo.pop() else {
                break;
            };
            match previous {
                Some(pending) => self.writes.insert(key, pending),
                None => self.writes.remove(&key),
            };
        }
    }

    /// Writes everything atomically (not yet flushed).
    pub fn commit(self) -> Result<(), StoreError> {
        let state = &self.store.state;
        let mut ops = self.ops.get();
        ops.steps = 1;
        ops.written = self.writes.len() as u64;
        let mut batch = self.store.db.batch();
        for (key, value) in self.writes {
            match value {
                Some(value) => batch.insert(state, key, value),
                None => batch.remove(state, key),
            }
        }
        self.store.wrote(batch.commit())?;
        self.store.ops.add(&ops);
        for count in self.counts {
            metrics::counter!(count.name, count.labels).increment(count.by);
        }
        Ok(())
    }
}
