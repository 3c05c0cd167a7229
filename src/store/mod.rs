//! Storage: the one module that knows sled, its trees, key layouts and value codec.
//!
//! Two trees hold everything:
//! - `journal`: `j` + seq → a [`Record`], and `d` + channel + NUL + external id → seq. One sled
//!   batch writes both, so a record and its deduplication key are durable together.
//! - `state`: every effect of the processor under prefixed keys (contacts, the identity index,
//!   conversations, tickets, the event outbox and the processor's cursor). Keeping them in one
//!   tree lets one atomic batch commit a whole processor step with its cursor. The identity
//!   index packs its entries into buckets (see `identities.rs`) so that sled's per-page memory
//!   does not grow with the number of contacts.
//!
//! Values are a version byte followed by JSON, so they can be read by hand and evolve with
//! `#[serde(default)]`; the identity buckets are the one binary value, for size.

mod backup;
mod batch;
mod blobs;
pub mod census;
mod identities;
pub mod keys;
mod mailboxes;
mod sinks;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use backup::{BackupCopy, Trees, WriteGate};
pub use batch::{Savepoint, StateBatch};
pub use blobs::Blobs;
pub use mailboxes::MailboxCheckpoint;

use crate::model::{DedupeKey, Record};

const CODEC_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    #[error("value under {key} cannot be decoded: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The embedded database. Cloning is cheap and shares the same database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    journal: sled::Tree,
    state: sled::Tree,
    /// Each sink's cursor and dead letters; written only by the sink tasks (see `sinks.rs`).
    sinks: sled::Tree,
    /// Set once a write or flush fails with an I/O error. sled then refuses every later write
    /// for the life of the process (seen here with a full disk): only reopening the database
    /// recovers, which the app does by restarting itself once space returns.
    failed: Arc<AtomicBool>,
}

/// One journal record as read back, still undecoded where decoding failed.
pub struct JournalItem {
    pub seq: u64,
    pub record: Result<Record, StoreError>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, crate::config::DEFAULT_CACHE_CAPACITY_BYTES)
    }

    /// Opens with sled's page cache bounded to `cache_capacity_bytes`, which keeps resident
    /// memory flat however many contacts the state holds.
    pub fn open_with(dir: &Path, cache_capacity_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            // Durability comes from the single writers' explicit flushes; a background flusher
            // would only contend with them.
            .flush_every_ms(None)
            .open()?;
        let store = Store {
            journal: db.open_tree("journal")?,
            state: db.open_tree("state")?,
            sinks: db.open_tree("sinks")?,
            db,
            failed: Arc::default(),
        };
        identities::migrate_legacy(&store)?;
        Ok(store)
    }

    /// Makes every write so far durable. Called by the single writers, once per batch.
    pub fn flush(&self) -> Result<(), StoreError> {
        note_failure(&self.failed, self.db.flush())?;
        Ok(())
    }

    /// Whether a write has failed with an I/O error (see the `failed` field).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// The highest journal sequence number written, 0 for an empty journal.
    pub fn journal_last_seq(&self) -> Result<u64, StoreError> {
        let last = self
            .journal
            .scan_prefix(keys::JOURNAL)
            .next_back()
            .transpose()?;
        Ok(last.map(|(key, _)| keys::journal_seq(&key)).unwrap_or(0))
    }

    /// The journal seq already holding this channel's external id, if any.
    pub fn journal_lookup(&self, key: &DedupeKey) -> Result<Option<u64>, StoreError> {
        let found = self.journal.get(keys::dedupe(key))?;
        Ok(found.map(|value| keys::be_u64(&value)))
    }

    /// Appends records with their deduplication keys in one atomic batch (not yet flushed).
    pub fn journal_append<'a>(
        &self,
        records: impl IntoIterator<Item = (u64, &'a DedupeKey, &'a Record)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (seq, dedupe, record) in records {
            batch.insert(keys::journal(seq).to_vec(), encode(record));
            batch.insert(keys::dedupe(dedupe), seq.to_be_bytes().to_vec());
        }
        note_failure(&self.failed, self.journal.apply_batch(batch))?;
        Ok(())
    }

    /// Records after `after`, up to `upto` inclusive, at most `limit` of them.
    pub fn journal_read(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<JournalItem>, StoreError> {
        let mut items = Vec::new();
        if upto <= after {
            return Ok(items);
        }
        for entry in self
            .journal
            .range(keys::journal(after + 1)..=keys::journal(upto))
            .take(limit)
        {
            let (key, value) = entry?;
            let seq = keys::journal_seq(&key);
            items.push(JournalItem {
                seq,
                record: decode(&format!("journal/{seq}"), &value),
            });
        }
        Ok(items)
    }

    /// One journal record, `None` when there is none at `seq`.
    pub fn journal_get(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        match self.journal.get(keys::journal(seq))? {
            Some(value) => decode(&format!("journal/{seq}"), &value).map(Some),
            None => Ok(None),
        }
    }

    /// Deletes applied journal records with their deduplication keys, then `state_keys` (what
    /// the state keeps about them); journal retention's one write. A key goes only while it
    /// still names its record, and keys go before records, so a crash in between leaves
    /// records that the next pass deletes, never a key that names nothing. The state
    /// deletions are the caller's to hold the write gate for. Not flushed.
    pub fn journal_forget(
        &self,
        records: &[(u64, DedupeKey)],
        state_keys: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        for (seq, key) in records {
            let named = seq.to_be_bytes();
            let swapped =
                self.journal
                    .compare_and_swap(keys::dedupe(key), Some(&named[..]), None::<&[u8]>);
            // A key that names another record (or nothing) stays as it is.
            let _ = note_failure(&self.failed, swapped)?;
        }
        let (mut journal, mut state) = (sled::Batch::default(), sled::Batch::default());
        for (seq, _) in records {
            journal.remove(keys::journal(*seq).to_vec());
        }
        for key in state_keys {
            state.remove(key);
        }
        note_failure(&self.failed, self.journal.apply_batch(journal))?;
        note_failure(&self.failed, self.state.apply_batch(state))?;
        Ok(())
    }

    /// Overwrites an applied journal record in place (erasure redacts bodies); its dedupe key
    /// stays. Not flushed.
    pub fn journal_replace(&self, seq: u64, record: &Record) -> Result<(), StoreError> {
        self.journal.insert(keys::journal(seq), encode(record))?;
        Ok(())
    }

    /// Starts a processor step: reads see the step's own writes; nothing is written until
    /// [`StateBatch::commit`].
    pub fn state_batch(&self) -> StateBatch<'_> {
        StateBatch::new(&self.state, &self.failed)
    }

    /// Reads one value from the state tree outside a batch.
    pub fn state_get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.state.get(key)? {
            Some(value) => decode(&String::from_utf8_lossy(key), &value).map(Some),
            None => Ok(None),
        }
    }

    /// Values under a key prefix, in key order, starting after `after` (a full key) when given.
    pub fn state_scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut start = prefix.to_vec();
        if let Some(after) = after {
            start = after.to_vec();
            start.push(0);
        }
        let mut found = Vec::new();
        for entry in self.state.range(start..) {
            let (key, value) = entry?;
            if !key.starts_with(prefix) || found.len() >= limit {
                break;
            }
            let decoded = decode(&String::from_utf8_lossy(&key), &value)?;
            found.push((key.to_vec(), decoded));
        }
        Ok(found)
    }

    /// Events after `after`, up to `upto` inclusive, at most `limit`: (seq, CloudEvent JSON).
    pub fn outbox_read(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, sled::IVec)>, StoreError> {
        let mut events = Vec::new();
        if upto <= after {
            return Ok(events);
        }
        for entry in self
            .state
            .range(keys::outbox(after + 1)..=keys::outbox(upto))
            .take(limit)
        {
            let (key, value) = entry?;
            events.push((keys::outbox_seq(&key), value));
        }
        Ok(events)
    }
}

/// Passes a write's result through, remembering an I/O failure.
fn note_failure<T>(failed: &AtomicBool, result: Result<T, sled::Error>) -> Result<T, StoreError> {
    if let Err(sled::Error::Io(error)) = &result {
        if !failed.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, "storage failed; writes are refused until deskgate restarts");
        }
    }
    Ok(result?)
}

/// Encodes a value for storage: a version byte, then JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![CODEC_VERSION];
    // Serialising our own plain structs to a Vec cannot fail: no maps with non-string keys,
    // no custom Serialize impls that error.
    serde_json::to_writer(&mut bytes, value).expect("plain structs serialise to JSON");
    bytes
}

/// Decodes a stored value; `key` only names it in the error.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    match bytes.split_first() {
        Some((&CODEC_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
        }
        Some((version, _)) => Err(corrupt(format!("unknown codec version {version}"))),
        None => Err(corrupt("empty value".to_owned())),
    }
}

#[cfg(test)]
mod tests;
