//! The `outbox` keyspace: the events, read by the feed and the sinks, written by processor
//! steps (as state keys, see [`Store::tree`]) and deleted by outbox compaction.
//!
//! Compaction deletes old `outbox/` keys; the processor only ever writes new, higher ones, so
//! the two never write the same key.

use fjall::Keyspace;

use super::{keys, Store, StoreError, Value};

/// Events moved per atomic batch when a database written before this keyspace is opened.
const MOVE_BATCH: usize = 10_000;

impl Store {
    /// The keyspace a state key is in: outbox events in `outbox`, everything else in
    /// `state`. A scan is routed by its start; no state prefix is a prefix of the outbox's.
    pub(super) fn tree(&self, key: &[u8]) -> &Keyspace {
        match keys::is_outbox(key) {
            true => &self.outbox,
            false => &self.state,
        }
    }

    /// Events after `after`, up to `upto` inclusive, at most `limit`: (seq, CloudEvent JSON).
    pub fn outbox_read(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Value)>, StoreError> {
        let mut events = Vec::new();
        if upto <= after {
            return Ok(events);
        }
        for entry in self
            .outbox
            .range(keys::outbox(after + 1)..=keys::outbox(upto))
            .take(limit)
        {
            let (key, value) = entry.into_inner()?;
            events.push((keys::outbox_seq(&key), value));
        }
        Ok(events)
    }

    /// The oldest event still in the outbox, if any.
    pub fn outbox_oldest(&self) -> Result<Option<u64>, StoreError> {
        match self.outbox.prefix(keys::outbox_prefix()).next() {
            Some(first) => Ok(Some(keys::outbox_seq(&first.key()?))),
            None => Ok(None),
        }
    }

    /// Deletes outbox events up to `upto` inclusive; returns how many were deleted.
    pub fn outbox_compact(&self, upto: u64) -> Result<usize, StoreError> {
        let mut batch = self.db.batch();
        let mut deleted = 0;
        for entry in self.outbox.range(keys::outbox(0)..=keys::outbox(upto)) {
            batch.remove(&self.outbox, entry.key()?);
            deleted += 1;
        }
        self.wrote(batch.commit())?;
        Ok(deleted)
    }
}

/// Moves outbox events out of the `state` keyspace, where databases written before the
/// `outbox` keyspace kept them (a sled migration puts them there too). Each batch removes what
/// it moved in the same atomic write, so a crash part-way resumes where it stopped. Returns
/// how many events moved.
pub(super) fn move_out_of_state(store: &Store) -> Result<u64, StoreError> {
    let mut moved = 0;
    let mut start = keys::outbox_prefix().to_vec();
    loop {
        let mut batch = store.db.batch();
        let mut last = None;
        let mut count = 0;
        for entry in store.state.range(start.as_slice()..).take(MOVE_BATCH) {
            let (key, value) = entry.into_inner()?;
            if !keys::is_outbox(&key) {
                break;
            }
            batch.remove(&store.state, key.clone());
            batch.insert(&store.outbox, key.clone(), value);
            last = Some(key);
            count += 1;
        }
        let Some(last) = last else {
            break;
        };
        store.wrote(batch.commit())?;
        store.flush()?;
        moved += count;
        tracing::info!(moved, "outbox: moved events out of the state keyspace");
        // Past the last key moved, not over the tombstones this run left behind it.
        start = last.to_vec();
        start.push(0);
    }
    Ok(moved)
}
