//! Copying the running database into a new state directory, keyspace by keyspace, and the gate
//! that lets a copy of the state keyspace hold whole processor steps.
//!
//! One process opens a database at a time, so the running daemon makes the copy, reading the
//! live keyspaces. What keeps it consistent is the order of the copy and what it filters,
//! which [`crate::backup`] decides; this module only copies what it is told.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use fjall::Keyspace;

use super::{keys, Store, StoreError};

/// Keys written to the copy per batch.
const CHUNK: usize = 10_000;

/// Held by each writer of the state tree for one whole atomic change (a processor step, a
/// compaction chunk), and by a backup while it copies that tree: the copy then holds every
/// step whole, with its cursor, or not at all. Cheap to clone; clones share one gate.
#[derive(Clone, Default)]
pub struct WriteGate(Arc<Mutex<()>>);

impl WriteGate {
    /// Blocks until no one else holds the gate.
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        // The lock guards no data: a holder that panicked left nothing half-done here.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A new database being filled with a copy.
pub struct BackupCopy {
    dir: std::path::PathBuf,
    db: fjall::Database,
}

/// Which trees [`BackupCopy::copy_trees`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trees {
    /// Every keyspace but `journal`, `state` and `outbox`: IMAP checkpoints, sink cursors
    /// and dead letters, and any keyspace added later.
    Side,
    /// What the processor's steps write: the `state` and `outbox` keyspaces.
    State,
}

impl Store {
    /// Keys in every tree, counted now (for progress; the trees change while they are copied).
    pub fn key_count(&self) -> Result<u64, StoreError> {
        // Exact counts read every key; progress needs only an estimate.
        Ok(super::KEYSPACES
            .iter()
            .filter_map(|name| self.keyspace(name))
            .map(|keyspace| keyspace.approximate_len() as u64)
            .sum())
    }

    /// Creates a new, empty database in `dir` to copy into.
    pub fn backup_copy(&self, dir: &Path) -> Result<BackupCopy, StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        let db = super::open_database(&dir.join(super::DB_DIR), 8 << 20)?;
        Ok(BackupCopy {
            dir: dir.to_owned(),
            db,
        })
    }
}

impl BackupCopy {
    /// Copies the chosen trees whole; `progress` hears how many keys were copied so far.
    pub fn copy_trees(
        &self,
        from: &Store,
        which: Trees,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StoreError> {
        let mut copied = 0;
        for name in super::KEYSPACES {
            let is_state = name == super::STATE || name == super::OUTBOX;
            let is_side = !is_state && name != super::JOURNAL;
            if (which == Trees::State && is_state) || (which == Trees::Side && is_side) {
                let Some(source) = from.keyspace(name) else {
                    continue;
                };
                let target = super::open_keyspace(&self.db, name)?;
                copied += copy(&self.db, source, &target, |_, _| true, copied, progress)?;
            }
        }
        Ok(copied)
    }

    /// Copies the journal's records up to `upto` and the deduplication keys of those records
    /// only: a key without its record would answer a later retry "duplicate" for a message
    /// the copy never kept. The tree holds records (`j` + seq) and keys (whose value is the
    /// seq of their record); records are never deleted, so every key at or below `upto` has
    /// its record in the copy.
    pub fn copy_journal(
        &self,
        from: &Store,
        upto: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StoreError> {
        let target = super::open_keyspace(&self.db, super::JOURNAL)?;
        let wanted = |key: &[u8], value: &[u8]| {
            if key.starts_with(keys::JOURNAL) {
                keys::journal_seq(key) <= upto
            } else if value.len() == 8 {
                keys::be_u64(value) <= upto
            } else {
                true
            }
        };
        copy(&self.db, &from.journal, &target, wanted, 0, progress)
    }

    /// Makes the copy durable, marks it as a state directory and closes it, so another
    /// process can open it.
    pub fn finish(self) -> Result<(), StoreError> {
        for name in super::KEYSPACES {
            super::open_keyspace(&self.db, name)?;
        }
        self.db.persist(fjall::PersistMode::SyncAll)?;
        drop(self.db);
        super::write_synced(&self.dir, super::MARKER, super::MARKER_TEXT.as_bytes())
    }
}

/// Copies the entries of `source` that `wanted` keeps, in batches; returns how many.
fn copy(
    db: &fjall::Database,
    source: &Keyspace,
    target: &Keyspace,
    wanted: impl Fn(&[u8], &[u8]) -> bool,
    before: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, StoreError> {
    let mut batch = db.batch();
    let (mut in_batch, mut copied) = (0usize, 0u64);
    for entry in source.iter() {
        let (key, value) = entry.into_inner()?;
        if !wanted(&key, &value) {
            continue;
        }
        batch.insert(target, key, value);
        in_batch += 1;
        if in_batch == CHUNK {
            std::mem::replace(&mut batch, db.batch()).commit()?;
            copied += in_batch as u64;
            in_batch = 0;
            progress(before + copied);
        }
    }
    batch.commit()?;
    copied += in_batch as u64;
    progress(before + copied);
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DedupeKey, Inbound, Record, Sender};

    fn record(id: &str) -> (DedupeKey, Record) {
        let at = chrono::DateTime::UNIX_EPOCH;
        let inbound = Inbound::new("api", id, "t", Sender::default(), "hello", at);
        let record = Record::Inbound(Box::new(inbound));
        (DedupeKey::of(&record), record)
    }

    #[test]
    fn the_journal_copy_keeps_records_up_to_a_seq_and_only_their_dedupe_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("live")).unwrap();
        let records: Vec<_> = ["a", "b", "c"].into_iter().map(record).collect();
        store
            .journal_append(
                records
                    .iter()
                    .enumerate()
                    .map(|(i, (k, r))| (i as u64 + 1, k, r)),
            )
            .unwrap();
        let copy = store.backup_copy(&dir.path().join("copy")).unwrap();
        let mut seen = Vec::new();
        let copied = copy.copy_journal(&store, 2, &mut |n| seen.push(n)).unwrap();
        assert_eq!(copied, 4, "two records and their two keys");
        assert_eq!(seen.last(), Some(&4));
        copy.finish().unwrap();

        let restored = Store::open(&dir.path().join("copy")).unwrap();
        assert_eq!(restored.journal_last_seq().unwrap(), 2);
        assert_eq!(restored.journal_lookup(&records[1].0).unwrap(), Some(2));
        assert_eq!(
            restored.journal_lookup(&records[2].0).unwrap(),
            None,
            "no key without its record"
        );
    }
}
