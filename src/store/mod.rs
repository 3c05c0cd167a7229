//! Storage: the one module that knows the engine (fjall), its keyspaces, key layouts and value
//! codec.
//!
//! The state directory holds `fjall/` (the database), `blobs/` (attachment contents, see
//! `blobs.rs`) and a marker file, `deskgate-state`, written once the database exists: a state
//! directory whose marker is there but whose database is gone refuses to open instead of
//! starting empty (a lost directory entry after a power cut must not look like a first start).
//!
//! fjall keeps one write-ahead log for all keyspaces. [`Store::flush`] ends in `fdatasync` of
//! that log (`PersistMode::SyncData`): what was written before it returns survives a power cut,
//! and because the log is one ordered file, a write that survived implies every write before it
//! did. Writes between flushes survive a killed process (they are in the page cache) but not a
//! power cut; only the journal writer's flush acknowledges anything.
//!
//! Five keyspaces hold everything:
//! - `journal`: `j` + seq → a [`Record`], and `d` + channel + NUL + external id → seq. One
//!   atomic batch writes both, so a record and its deduplication key are durable together.
//! - `state`: every effect of the processor under prefixed keys (contacts, the identity index,
//!   conversations, tickets and the processor's cursor). One atomic batch commits a whole
//!   processor step with its cursor, and its events in `outbox`.
//! - `outbox`: the events (`outbox/` + seq → CloudEvent JSON), written by the processor's
//!   steps and deleted by retention, oldest first. They are most of the bytes the processor
//!   writes; in a keyspace of their own, whose keys only grow, compacting the state no longer
//!   rewrites them, and fjall's leveled strategy can move their non-overlapping tables down
//!   without rewriting them (read in its code; not traced in a run).
//!   Processor steps address them as state keys (`Store::tree` routes by prefix).
//! - `sinks`: each sink's cursor and dead letters (`sinks.rs`).
//! - `mailboxes`: IMAP checkpoints (`mailboxes.rs`).
//!
//! Values are a version byte followed by JSON, so they can be read by hand and evolve with
//! `#[serde(default)]`; the identity buckets are the one binary value, for size.

mod backup;
mod batch;
mod blobs;
mod carry;
pub mod census;
mod failure;
mod identities;
pub mod keys;
mod mailboxes;
mod migrate;
mod ops;
mod outbox;
mod sinks;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use backup::{BackupCopy, Trees, WriteGate};
pub use batch::{Savepoint, SealedBatch, Seed, StateBatch, StateValue};
pub use blobs::Blobs;
use carry::Carry;
pub use mailboxes::MailboxCheckpoint;
use ops::OpsTotal;
pub use ops::StateOps;

use crate::model::{DedupeKey, Record};
pub use failure::Failure;
use failure::{io_error, is_full, note_failure};

const CODEC_VERSION: u8 = 1;

/// The database's folder inside the state directory.
const DB_DIR: &str = "fjall";
/// Written (and synced) once the database exists; see the module docs.
const MARKER: &str = "deskgate-state";
const MARKER_TEXT: &str = "deskgate state directory; database: fjall/ (fjall 3)\n";

/// The keyspaces, by name; a backup copies each.
const JOURNAL: &str = "journal";
const STATE: &str = "state";
const SINKS: &str = "sinks";
const MAILBOXES: &str = "mailboxes";
const OUTBOX: &str = "outbox";
const KEYSPACES: [&str; 5] = [JOURNAL, STATE, OUTBOX, SINKS, MAILBOXES];

/// A stored value as the engine hands it out (cheap to clone, derefs to bytes).
pub type Value = fjall::Slice;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] fjall::Error),
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state directory {0} was initialised before (its {MARKER} marker is there) but its \
         database folder {DB_DIR}/ is missing: refusing to start on an empty state; restore \
         the state directory from a backup, or remove the marker to start afresh"
    )]
    Missing(PathBuf),
    #[error("migrating the sled database in {path}: {reason}")]
    Migration { path: PathBuf, reason: String },
    #[error("value under {key} cannot be decoded: {reason}")]
    Corrupt { key: String, reason: String },
    /// A write or sync failed earlier (this is its error), and the engine has refused every
    /// write since.
    #[error("storage failed: {}", .0.cause)]
    Failed(Failure),
}

impl StoreError {
    /// Whether the storage itself failed (as opposed to a value or an input being wrong): the
    /// operation may succeed again once the cause is gone.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Db(_) | StoreError::Failed(_) | StoreError::Io { .. }
        )
    }

    /// Whether the filesystem had no room left for a write.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Failed(failure) => failure.disk_full,
            StoreError::Db(error) => io_error(error).is_some_and(is_full),
            StoreError::Io { source, .. } => is_full(source),
            _ => false,
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The embedded database. Cloning is cheap and shares the same database.
#[derive(Clone)]
pub struct Store {
    db: Database,
    journal: Keyspace,
    state: Keyspace,
    /// The events, committed with the state (see the module docs).
    outbox: Keyspace,
    /// Each sink's cursor and dead letters; written only by the sink tasks (see `sinks.rs`).
    sinks: Keyspace,
    mailboxes: Keyspace,
    /// The first I/O error a write or sync failed with. fjall then refuses every later write
    /// for the life of the process (it poisons itself, and says only "poisoned"): only
    /// reopening the database recovers, which the app does by restarting itself once space
    /// returns.
    failed: Arc<OnceLock<Failure>>,
    /// The database folder, to tell a full disk behind a failure the engine does not name.
    db_dir: Arc<Path>,
    /// Group commit across writers (see [`Store::flush`]).
    syncs: Arc<Syncs>,
    /// What committed processor steps asked of the state, in all (see [`Store::state_ops`]).
    ops: Arc<OpsTotal>,
    /// State values carried from one step to the next (see `carry.rs`).
    carry: Arc<Carry>,
}

/// Counts writes and what the last sync covered, so that concurrent flushes share one
/// `fdatasync`: fjall holds its log's lock for the whole sync, so two writers that each synced
/// after their own write (the journal writer and the processor) would take turns stalling
/// every write behind two syncs where one covers both.
#[derive(Default)]
struct Syncs {
    /// Writes completed (each bumps it once its commit returned).
    written: AtomicU64,
    /// `written` as read just before the last completed sync: every write counted up to there
    /// is durable.
    synced: AtomicU64,
    /// Held by the one flush that syncs; the others wait for it and usually find themselves
    /// covered.
    leader: Mutex<()>,
    /// Signalled after every sync, for writers that wait to be covered by someone else's
    /// ([`Store::wait_for_sync`]).
    covered: (Mutex<()>, Condvar),
}

/// One journal record as read back, still undecoded where decoding failed.
pub struct JournalItem {
    pub seq: u64,
    pub record: Result<Record, StoreError>,
}

impl Store {
    /// Whether `dir` holds a deskgate state directory of this version (its marker and database),
    /// so that a tool can open it without creating or migrating one.
    pub fn holds_state(dir: &Path) -> bool {
        dir.join(MARKER).is_file() && dir.join(DB_DIR).is_dir()
    }

    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, crate::config::DEFAULT_CACHE_CAPACITY_BYTES)
    }

    /// Opens the state directory `dir` (creating it on first start, migrating a sled database
    /// found there) with the engine's block cache bounded to `cache_capacity_bytes`.
    pub fn open_with(dir: &Path, cache_capacity_bytes: u64) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        let db_dir = dir.join(DB_DIR);
        if migrate::holds_sled(dir) && !db_dir.exists() {
            migrate::from_sled(dir, &db_dir, cache_capacity_bytes)?;
        }
        let marker = dir.join(MARKER);
        if !db_dir.exists() && marker.exists() {
            return Err(StoreError::Missing(dir.to_owned()));
        }
        let db = open_database(&db_dir, cache_capacity_bytes)?;
        if !marker.exists() {
            write_synced(dir, MARKER, MARKER_TEXT.as_bytes())?;
        }
        migrate::set_sled_aside(dir)?;
        let store = Store {
            journal: open_keyspace(&db, JOURNAL)?,
            state: open_keyspace(&db, STATE)?,
            outbox: open_keyspace(&db, OUTBOX)?,
            sinks: open_keyspace(&db, SINKS)?,
            mailboxes: open_keyspace(&db, MAILBOXES)?,
            db,
            failed: Arc::default(),
            db_dir: Arc::from(db_dir.as_path()),
            syncs: Arc::default(),
            ops: Arc::default(),
            carry: Arc::default(),
        };
        // Keyspaces created just now must not vanish behind a marker that says they exist.
        store.flush()?;
        identities::migrate_legacy(&store)?;
        outbox::move_out_of_state(&store)?;
        Ok(store)
    }

    /// Makes every write that returned before this call durable: `fdatasync` of the
    /// write-ahead log, shared with any flush that is syncing already when it covers this
    /// caller's writes. Called by the single writers, once per batch.
    pub fn flush(&self) -> Result<(), StoreError> {
        let wanted = self.syncs.written.load(Ordering::Acquire);
        // The lock guards no data (the counters are atomics): a panicked holder left nothing.
        let _leader = self
            .syncs
            .leader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.syncs.synced.load(Ordering::Acquire) >= wanted {
            return Ok(());
        }
        let covers = self.syncs.written.load(Ordering::Acquire);
        note_failure(
            &self.failed,
            &self.db_dir,
            self.db.persist(PersistMode::SyncData),
        )?;
        self.syncs.synced.fetch_max(covers, Ordering::Release);
        let (lock, signal) = &self.syncs.covered;
        // Taken so that a waiter between its check and its wait cannot miss this signal.
        drop(lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        signal.notify_all();
        Ok(())
    }

    /// Where the write order stands: every write that returned before this call is at or
    /// below the mark. Pass it to [`Store::wait_for_sync`].
    pub fn write_mark(&self) -> u64 {
        self.syncs.written.load(Ordering::Acquire)
    }

    /// Whether a completed sync covers every write up to `mark`.
    pub fn is_synced(&self, mark: u64) -> bool {
        self.syncs.synced.load(Ordering::Acquire) >= mark
    }

    /// Waits at most `within` for the next sync by any writer (a writer that can afford to
    /// let the journal writer's next group commit cover it, instead of syncing alone); true
    /// when a sync covers `mark`.
    pub fn wait_for_sync(&self, mark: u64, within: Duration) -> bool {
        let (lock, signal) = &self.syncs.covered;
        let guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.is_synced(mark) {
            return true;
        }
        // Woken by a sync, by the timeout, or spuriously: the caller decides what is next.
        drop(signal.wait_timeout(guard, within));
        self.is_synced(mark)
    }

    /// Passes a write's result through: counts a success for group commit, remembers a
    /// failure (see [`note_failure`]).
    fn wrote<T>(&self, result: Result<T, fjall::Error>) -> Result<T, StoreError> {
        let value = note_failure(&self.failed, &self.db_dir, result)?;
        self.syncs.written.fetch_add(1, Ordering::AcqRel);
        Ok(value)
    }

    /// Whether a write has failed with an I/O error (see the `failed` field).
    pub fn failed(&self) -> bool {
        self.failed.get().is_some()
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.disk_space()?)
    }

    fn keyspace(&self, name: &str) -> Option<&Keyspace> {
        match name {
            JOURNAL => Some(&self.journal),
            STATE => Some(&self.state),
            OUTBOX => Some(&self.outbox),
            SINKS => Some(&self.sinks),
            MAILBOXES => Some(&self.mailboxes),
            _ => None,
        }
    }

    /// The highest journal sequence number written, 0 for an empty journal.
    pub fn journal_last_seq(&self) -> Result<u64, StoreError> {
        let last = self.journal.prefix(keys::JOURNAL).next_back();
        match last {
            Some(guard) => Ok(keys::journal_seq(&guard.key()?)),
            None => Ok(0),
        }
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
        let mut batch = self.db.batch();
        for (seq, dedupe, record) in records {
            batch.insert(&self.journal, keys::journal(seq), encode(record));
            batch.insert(&self.journal, keys::dedupe(dedupe), seq.to_be_bytes());
        }
        self.wrote(batch.commit())
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
            let (key, value) = entry.into_inner()?;
            let seq = keys::journal_seq(&key);
            items.push(JournalItem {
                seq,
                record: decode_record(seq, &value),
            });
        }
        Ok(items)
    }

    /// One journal record, `None` when there is none at `seq`.
    pub fn journal_get(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        match self.journal.get(keys::journal(seq))? {
            Some(value) => decode_record(seq, &value).map(Some),
            None => Ok(None),
        }
    }

    /// Deletes applied journal records with their deduplication keys, then `state_keys` (what
    /// the state keeps about them), in one atomic batch; journal retention's one write. A key
    /// goes only while it still names its record: a key that names another record (or
    /// nothing) stays. Retention is the only deleter of keys and the journal writer never
    /// rewrites an existing key, so the read and the batch cannot race. The state deletions
    /// are the caller's to hold the write gate for. Not flushed.
    pub fn journal_forget(
        &self,
        records: &[(u64, DedupeKey)],
        state_keys: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for (seq, key) in records {
            let dedupe = keys::dedupe(key);
            let names_it = self
                .journal
                .get(&dedupe)?
                .is_some_and(|value| keys::be_u64(&value) == *seq);
            if names_it {
                batch.remove(&self.journal, dedupe);
            }
            batch.remove(&self.journal, keys::journal(*seq));
        }
        for key in &state_keys {
            batch.remove(self.tree(key), key.clone());
        }
        let committed = self.wrote(batch.commit());
        match committed {
            Ok(()) => self.carry.removed(&state_keys),
            Err(_) => self.carry.clear(),
        }
        committed
    }

    /// Overwrites an applied journal record in place (erasure redacts bodies); its dedupe key
    /// stays. Not flushed.
    pub fn journal_replace(&self, seq: u64, record: &Record) -> Result<(), StoreError> {
        self.wrote(self.journal.insert(keys::journal(seq), encode(record)))
    }

    /// What the processor's committed steps have asked of the state since the store opened.
    pub fn state_ops(&self) -> StateOps {
        self.ops.get()
    }

    /// Starts a processor step: reads see the step's own writes; nothing is written until
    /// [`StateBatch::commit`].
    pub fn state_batch(&self) -> StateBatch<'_> {
        StateBatch::new(self)
    }

    /// Starts a processor step on top of a sealed one, whether that one has landed or not
    /// (see [`StateBatch::seal`]).
    pub fn state_batch_after(&self, seed: Seed) -> StateBatch<'_> {
        StateBatch::after(self, seed)
    }

    /// Forgets every carried value: after a commit ended in a way that leaves the engine's
    /// state unknown here (a panic).
    pub fn forget_carried(&self) {
        self.carry.clear();
    }

    /// Reads one value from the state keyspace outside a batch.
    pub fn state_get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree(key).get(key)? {
            Some(value) => decode(&KeyName(key), &value).map(Some),
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
        for entry in self.tree(prefix).range(start..) {
            let (key, value) = entry.into_inner()?;
            if !key.starts_with(prefix) || found.len() >= limit {
                break;
            }
            let decoded = decode(&KeyName(&key), &value)?;
            found.push((key.to_vec(), decoded));
        }
        Ok(found)
    }
}

/// Memory for a keyspace's writes not yet flushed to tables. fjall's default (64 MiB per
/// keyspace) let a steady load grow resident memory past 300 MB in a 17-minute soak. Fixed
/// when a keyspace is created.
const MEMTABLE_BYTES: u64 = 8 << 20;
/// The write-ahead log kept before fjall flushes memtables to let old log files go (fjall's
/// smallest allowed; its default is 512 MiB): bounds the log on disk and the replay at start.
const LOG_BYTES: u64 = 64 << 20;

/// fjall's flush and compaction threads. One: with two or more, fjall 3.1's first worker hands
/// every compaction request back to the queue and takes it again while the other worker is
/// busy (`worker_pool.rs`, "let one worker prioritize flushing"), a busy loop that took a
/// quarter of a core under ingest load here; one worker flushes and compacts in turn.
const WORKER_THREADS: usize = 1;

/// Opens (or creates) a keyspace with deskgate's options.
fn open_keyspace(db: &Database, name: &str) -> Result<Keyspace, StoreError> {
    Ok(db.keyspace(name, || {
        let options = KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        if name == JOURNAL {
            // Records (raw mail, webhook bodies) are written once and deleted by retention:
            // kept in blob files, compactions move only their keys.
            options.with_kv_separation(Some(fjall::KvSeparationOptions::default()))
        } else {
            options
        }
    })?)
}

/// Opens (or creates) the fjall database in `db_dir`.
fn open_database(db_dir: &Path, cache_capacity_bytes: u64) -> Result<Database, StoreError> {
    let db = Database::builder(db_dir)
        .cache_size(cache_capacity_bytes)
        .max_journaling_size(LOG_BYTES)
        .worker_threads(WORKER_THREADS)
        // Durability comes from the single writers' explicit `persist`; fjall's own periodic
        // syncs would only add fdatasyncs nobody waits for.
        .manual_journal_persist(true)
        .open()?;
    Ok(db)
}

/// Writes `name` in `dir` whole or not at all: a temporary file, fsynced, renamed into place,
/// and the directory fsynced (which also makes every other entry of `dir` durable).
fn write_synced(dir: &Path, name: &str, content: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(StoreError::io(&tmp))?;
    file.write_all(content).map_err(StoreError::io(&tmp))?;
    file.sync_all().map_err(StoreError::io(&tmp))?;
    fs::rename(&tmp, dir.join(name)).map_err(StoreError::io(dir))?;
    sync_dir(dir)
}

/// fsyncs a directory, making its entries (created, renamed, removed files) durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

/// Encodes a value for storage: a version byte, then JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Tickets and contacts run to hundreds of bytes: a Vec starting at one byte grew up to
    // eight times on the way.
    let mut bytes = Vec::with_capacity(512);
    bytes.push(CODEC_VERSION);
    // Serialising our own plain structs to a Vec cannot fail: no maps with non-string keys,
    // no custom Serialize impls that error.
    serde_json::to_writer(&mut bytes, value).expect("plain structs serialise to JSON");
    bytes
}

/// Decodes a stored value; `key` only names it in the error, so it is formatted only then.
pub fn decode<T: DeserializeOwned>(
    key: &dyn std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    decode_with(key, bytes, |json| serde_json::from_slice(json))
}

/// Decodes the journal record at `seq` (see [`Record::from_json`]).
fn decode_record(seq: u64, bytes: &[u8]) -> Result<Record, StoreError> {
    decode_with(&format_args!("journal/{seq}"), bytes, Record::from_json)
}

fn decode_with<T>(
    key: &dyn std::fmt::Display,
    bytes: &[u8],
    from_json: impl FnOnce(&[u8]) -> serde_json::Result<T>,
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    match bytes.split_first() {
        Some((&CODEC_VERSION, json)) => from_json(json).map_err(|e| corrupt(e.to_string())),
        Some((version, _)) => Err(corrupt(format!("unknown codec version {version}"))),
        None => Err(corrupt("empty value".to_owned())),
    }
}

/// A state key in an error message: keys are text but for big-endian numbers in some.
pub(crate) struct KeyName<'a>(pub &'a [u8]);

impl std::fmt::Display for KeyName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

#[cfg(test)]
mod tests;
