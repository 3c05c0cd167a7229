//! Moving a state directory written by deskgate before fjall (a sled 0.34 database) to fjall.
//!
//! sled kept its files directly in the state directory: `conf`, `db`, `snap.*`, and large
//! values as numbered files in `blobs/` beside deskgate's attachment blobs (which are named by
//! 64 hex digits, so the two never clash). On the first start of this version:
//!
//! 1. every sled tree is copied, key for key, into a new fjall database in `fjall.migrating/`,
//!    which is then synced and renamed to `fjall/` (the directory fsynced): a crash before the
//!    rename leaves the sled files untouched and the next start migrates again from scratch;
//! 2. once `fjall/` exists, sled's files are moved into `sled-before-fjall/`, kept for the
//!    operator to delete once satisfied (`deskgate backup` of the migrated state is the way to
//!    keep a copy that this version opens).
//!
//! Step 2 is checked at every start (one `stat` of sled's `db`, which moves last), so a crash
//! between or during the two steps is finished later.

use std::fs;
use std::path::Path;

use fjall::PersistMode;

use super::{sync_dir, StoreError};

/// Where sled's files go once the state is migrated.
const SET_ASIDE: &str = "sled-before-fjall";
const PARTIAL: &str = "fjall.migrating";
/// sled's own tree, which deskgate never wrote to.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";
const CHUNK: usize = 10_000;

/// Whether `dir` holds a sled database.
pub(super) fn holds_sled(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// Copies the sled database in `dir` into a new fjall database at `db_dir`.
pub(super) fn from_sled(dir: &Path, db_dir: &Path, cache_bytes: u64) -> Result<(), StoreError> {
    let failed = |reason: String| StoreError::Migration {
        path: dir.to_owned(),
        reason,
    };
    let partial = dir.join(PARTIAL);
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(StoreError::io(&partial))?;
    }
    tracing::info!(dir = %dir.display(), "migrating the state from sled to fjall");
    let started = std::time::Instant::now();
    let sled = sled::Config::new()
        .path(dir)
        .open()
        .map_err(|e| failed(format!("sled cannot open it: {e}")))?;
    let db = super::open_database(&partial, cache_bytes)?;
    let mut copied = 0u64;
    for name in sled.tree_names() {
        let tree = sled.open_tree(&name).map_err(|e| failed(e.to_string()))?;
        if name == SLED_DEFAULT_TREE {
            if !tree.is_empty() {
                return Err(failed(
                    "sled's default tree holds keys deskgate never writes".into(),
                ));
            }
            continue;
        }
        let name = std::str::from_utf8(&name)
            .map_err(|_| failed("a tree name that is not UTF-8".to_owned()))?
            .to_owned();
        let target = super::open_keyspace(&db, &name)?;
        let mut batch = db.batch();
        for entry in tree.iter() {
            let (key, value) = entry.map_err(|e| failed(format!("reading tree {name}: {e}")))?;
            batch.insert(&target, &*key, &*value);
            copied += 1;
            if batch.len() == CHUNK {
                std::mem::replace(&mut batch, db.batch()).commit()?;
            }
        }
        batch.commit()?;
        tracing::info!(tree = %name, keys_so_far = copied, "migrated a sled tree");
    }
    db.persist(PersistMode::SyncAll)?;
    drop(db);
    drop(sled);
    fs::rename(&partial, db_dir).map_err(StoreError::io(db_dir))?;
    sync_dir(dir)?;
    tracing::info!(
        keys = copied,
        secs = started.elapsed().as_secs_f64(),
        "migrated the state from sled to fjall"
    );
    Ok(())
}

/// Moves sled's files out of the way once the fjall database exists. sled's `db` file moves
/// last, so a state directory without it has nothing left to move, and a start (every start
/// runs this) reads no directory for it.
pub(super) fn set_sled_aside(dir: &Path) -> Result<(), StoreError> {
    if !dir.join("db").is_file() {
        return Ok(());
    }
    let mut leftovers = Vec::new();
    let blobs = dir.join("blobs");
    if blobs.is_dir() {
        for entry in fs::read_dir(&blobs).map_err(StoreError::io(&blobs))? {
            let name = entry.map_err(StoreError::io(&blobs))?.file_name();
            // sled numbers its blob files; deskgate's are 64 hex digits.
            if name.to_str().is_some_and(|n| n.parse::<u64>().is_ok()) {
                leftovers.push(format!("blobs/{}", name.to_string_lossy()));
            }
        }
    }
    for entry in fs::read_dir(dir).map_err(StoreError::io(dir))? {
        let name = entry.map_err(StoreError::io(dir))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") {
            leftovers.push(name.into_owned());
        }
    }
    if dir.join("conf").is_file() {
        leftovers.push("conf".to_owned());
    }
    leftovers.push("db".to_owned());
    let aside = dir.join(SET_ASIDE);
    fs::create_dir_all(aside.join("blobs")).map_err(StoreError::io(&aside))?;
    for name in &leftovers {
        fs::rename(dir.join(name), aside.join(name)).map_err(StoreError::io(dir))?;
    }
    sync_dir(&aside.join("blobs"))?;
    sync_dir(&aside)?;
    if blobs.is_dir() {
        sync_dir(&blobs)?;
    }
    sync_dir(dir)?;
    tracing::warn!(
        kept = %aside.display(),
        files = leftovers.len(),
        "the sled database this state was migrated from is kept; delete it once the migrated \
         state has served you well"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{keys, Store};
    use super::*;
    use crate::model::{DedupeKey, Inbound, Record, Sender};

    /// Writes what deskgate before fjall wrote: the four trees (events among the state's keys),
    /// and a numbered sled blob.
    fn sled_state(dir: &Path) -> (DedupeKey, Record) {
        let at = chrono::DateTime::UNIX_EPOCH;
        let record = Record::Inbound(Box::new(Inbound::new(
            "api",
            "m-1",
            "t",
            Sender::default(),
            "hello",
            at,
        )));
        let key = DedupeKey::of(&record);
        // Without sled's background flusher, whose thread holds the database (and its file
        // lock) for a moment after the handle is dropped: the migration opening it right after
        // found it locked on a loaded machine.
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .unwrap();
        let journal = db.open_tree("journal").unwrap();
        journal
            .insert(keys::journal(1), super::super::encode(&record))
            .unwrap();
        journal
            .insert(keys::dedupe(&key), &1u64.to_be_bytes())
            .unwrap();
        let state = db.open_tree("state").unwrap();
        state
            .insert(keys::CURSOR, super::super::encode(&1u64))
            .unwrap();
        let big = vec![7u8; 64 * 1024];
        state.insert(b"big/value", big).unwrap();
        // Events were state keys then.
        state.insert(keys::outbox(1), br#"{"id":"e1"}"#).unwrap();
        db.open_tree("sinks")
            .unwrap()
            .insert(b"c/crm", &5u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
        (key, record)
    }

    #[test]
    fn a_sled_state_directory_is_migrated_once_and_its_files_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (key, record) = sled_state(dir.path());
        fs::create_dir_all(dir.path().join("blobs")).unwrap();
        let attachment = "a".repeat(64);
        fs::write(dir.path().join("blobs").join(&attachment), b"attached").unwrap();
        fs::write(dir.path().join("blobs").join("17"), b"a sled blob").unwrap();

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.journal_last_seq().unwrap(), 1);
        assert_eq!(store.journal_lookup(&key).unwrap(), Some(1));
        assert_eq!(store.journal_get(1).unwrap(), Some(record));
        assert_eq!(store.state_get::<u64>(keys::CURSOR).unwrap(), Some(1));
        assert_eq!(store.sink_cursor("crm").unwrap(), Some(5));
        let events = store.outbox_read(0, u64::MAX, 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].0, &events[0].1[..]), (1, &br#"{"id":"e1"}"#[..]));
        drop(store);

        let aside = dir.path().join(SET_ASIDE);
        assert!(aside.join("conf").is_file() && aside.join("db").is_file());
        assert!(aside.join("blobs/17").is_file(), "sled's blob moved aside");
        assert!(!dir.path().join("conf").exists());
        assert!(
            dir.path().join("blobs").join(&attachment).is_file(),
            "deskgate's own blob stays"
        );
        assert!(!holds_sled(dir.path()));

        // A second start opens the migrated database and migrates nothing again.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.sink_cursor("crm").unwrap(), Some(5));
    }

    #[test]
    fn a_migration_cut_short_starts_again_from_the_sled_files() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = sled_state(dir.path());
        // What a crash in the middle of the copy leaves.
        fs::create_dir_all(dir.path().join(PARTIAL).join("junk")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.journal_lookup(&key).unwrap(), Some(1));
        assert!(!dir.path().join(PARTIAL).exists());
    }
}
