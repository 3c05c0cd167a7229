//! `deskgate backup DEST`: a consistent copy of the state, taken by the running daemon (one
//! process at a time opens the database, so no other process can read it while deskgate runs).
//! The control API starts it (`POST /v1/control/backup`) and reports its progress.
//!
//! The copy is built in a temporary directory beside DEST and renamed to DEST once complete,
//! so DEST never holds half a copy. The order makes the copy a state the daemon could have
//! stopped in:
//! 1. The side trees: IMAP checkpoints and sink cursors (and dead letters). First, so that
//!    they are never ahead of what the journal and outbox copied later hold: a checkpoint names
//!    mail already journaled, a cursor events already in the outbox. Restored, the daemon
//!    fetches some mail again (the journal answers it as duplicates) and delivers some events
//!    again (with the same ids, as after any crash).
//! 2. The state and outbox trees, with the processor and outbox compaction paused between two
//!    of their atomic changes ([`WriteGate`]): each step's effects are in the copy together
//!    with its cursor, or none of them. Ingestion goes on meanwhile; the processor catches up
//!    after.
//! 3. The journal's records up to the seq durable once the state was copied (so at or above
//!    the copied cursor), and only the deduplication keys of those records.
//! 4. The blobs: a record only names blobs written before it was journaled.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::store::{keys, Blobs, Store, StoreError, Trees, WriteGate};

/// Why a backup did not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("a backup to {} is already running", .0.display())]
    Busy(PathBuf),
    /// DEST cannot be used (relative, already there, no parent directory).
    #[error("dest: {0}")]
    Destination(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Done,
    Failed,
}

/// Where the current (or last) backup stands, as `GET /v1/control/backup` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub status: Status,
    pub dest: PathBuf,
    pub keys_copied: u64,
    /// The keys the database held when the backup started (it changes while it runs).
    pub keys_estimated: u64,
    pub blobs_copied: u64,
    /// The finished copy's size on disk.
    pub bytes: Option<u64>,
    /// The last journal record in the copy.
    pub journal_seq: Option<u64>,
    /// The processor's cursor in the copy (never above `journal_seq`).
    pub processor_cursor: Option<u64>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a backup reads from.
struct Source {
    store: Store,
    blobs: Blobs,
    gate: WriteGate,
    durable: watch::Receiver<u64>,
}

/// Starts backups, one at a time, and keeps the last one's progress. Cheap to clone.
#[derive(Clone)]
pub struct Backups {
    source: Arc<Source>,
    current: Arc<Mutex<Option<Progress>>>,
}

impl Backups {
    /// Backups of `store` and `blobs`; `gate` is the one the processor and compaction hold,
    /// `durable` the journal's durable seq.
    pub fn new(
        store: Store,
        blobs: Blobs,
        gate: WriteGate,
        durable: watch::Receiver<u64>,
    ) -> Backups {
        let source = Source {
            store,
            blobs,
            gate,
            durable,
        };
        Backups {
            source: Arc::new(source),
            current: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Progress>> {
        // Only plain progress fields live here: a panic mid-update leaves them readable.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current or last backup, if any ran since start-up.
    pub fn status(&self) -> Option<Progress> {
        self.lock().clone()
    }

    /// Starts a backup into `dest` (an absolute path that does not exist yet) on a thread of
    /// its own; returns at once.
    pub fn start(&self, dest: &Path) -> Result<Progress, BackupError> {
        check_destination(dest)?;
        let progress = {
            let mut current = self.lock();
            if let Some(running) = current.as_ref().filter(|p| p.status == Status::Running) {
                return Err(BackupError::Busy(running.dest.clone()));
            }
            let progress = Progress {
                status: Status::Running,
                dest: dest.to_owned(),
                keys_copied: 0,
                keys_estimated: 0,
                blobs_copied: 0,
                bytes: None,
                journal_seq: None,
                processor_cursor: None,
                error: None,
                started_at: Utc::now(),
                finished_at: None,
            };
            *current = Some(progress.clone());
            progress
        };
        let backups = self.clone();
        let dest = dest.to_owned();
        let started = std::thread::Builder::new()
            .name("backup".to_owned())
            .spawn(move || backups.run(&dest));
        if let Err(error) = started {
            self.update(|p| {
                p.status = Status::Failed;
                p.error = Some(error.to_string());
            });
            return Err(BackupError::Io(error));
        }
        Ok(progress)
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        if let Some(progress) = self.lock().as_mut() {
            change(progress);
        }
    }

    fn run(&self, dest: &Path) {
        tracing::info!(dest = %dest.display(), "backup started");
        let outcome = self.build(dest);
        self.finish(outcome);
    }

    fn finish(&self, outcome: Result<u64, BackupError>) {
        self.update(|progress| {
            progress.finished_at = Some(Utc::now());
            match outcome {
                Ok(bytes) => {
                    progress.status = Status::Done;
                    progress.bytes = Some(bytes);
                    tracing::info!(
                        dest = %progress.dest.display(),
                        keys = progress.keys_copied,
                        blobs = progress.blobs_copied,
                        bytes,
                        "backup: done, {} keys, {} blobs, {bytes} bytes",
                        progress.keys_copied,
                        progress.blobs_copied,
                    );
                }
                Err(error) => {
                    tracing::error!(%error, dest = %progress.dest.display(), "backup failed");
                    progress.status = Status::Failed;
                    progress.error = Some(error.to_string());
                }
            }
        });
    }

    /// Builds the copy beside `dest` and renames it into place; returns its size.
    fn build(&self, dest: &Path) -> Result<u64, BackupError> {
        let partial = partial_path(dest);
        // What a crash left of an earlier attempt at the same destination.
        if partial.exists() {
            std::fs::remove_dir_all(&partial)?;
        }
        std::fs::create_dir(&partial)?;
        let built = self.copy_into(&partial);
        if built.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        built?;
        let bytes = size_of(&partial)?;
        std::fs::rename(&partial, dest)?;
        if let Some(parent) = dest.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(bytes)
    }

    /// The copy itself, in the order the module docs explain.
    fn copy_into(&self, dir: &Path) -> Result<(), BackupError> {
        let Source {
            store,
            blobs,
            gate,
            durable,
        } = &*self.source;
        let estimated = store.key_count()?;
        self.update(|p| p.keys_estimated = estimated);
        let mut report = Reporter::new(self, estimated);
        let copy = store.backup_copy(dir)?;
        let side = copy.copy_trees(store, Trees::Side, &mut |n| report.keys(n))?;
        let (state, cursor) = {
            let _paused = gate.hold();
            let state = copy.copy_trees(store, Trees::State, &mut |n| report.keys(side + n))?;
            (state, store.state_get::<u64>(keys::CURSOR)?.unwrap_or(0))
        };
        let upto = *durable.borrow();
        let before = side + state;
        copy.copy_journal(store, upto, &mut |n| report.keys(before + n))?;
        copy.finish()?;
        self.update(|p| {
            p.journal_seq = Some(upto);
            p.processor_cursor = Some(cursor);
        });
        blobs.copy_to(dir, &mut |n| report.blobs(n))?;
        Ok(())
    }
}

/// Keeps the progress current and logs a progress line at most once a second.
struct Reporter<'a> {
    backups: &'a Backups,
    estimated: u64,
    last_line: Instant,
}

impl<'a> Reporter<'a> {
    fn new(backups: &'a Backups, estimated: u64) -> Reporter<'a> {
        Reporter {
            backups,
            estimated,
            last_line: Instant::now(),
        }
    }

    fn due(&mut self) -> bool {
        let due = self.last_line.elapsed() >= Duration::from_secs(1);
        if due {
            self.last_line = Instant::now();
        }
        due
    }

    fn keys(&mut self, copied: u64) {
        self.backups.update(|p| p.keys_copied = copied);
        if self.due() {
            tracing::info!("backup: {copied}/{} keys", self.estimated);
        }
    }

    fn blobs(&mut self, copied: u64) {
        self.backups.update(|p| p.blobs_copied = copied);
        if self.due() {
            tracing::info!("backup: {copied} blobs");
        }
    }
}

fn check_destination(dest: &Path) -> Result<(), BackupError> {
    let refuse = |why: &str| {
        Err(BackupError::Destination(format!(
            "{}: {why}",
            dest.display()
        )))
    };
    if !dest.is_absolute() {
        return refuse("must be an absolute path on the daemon's host");
    }
    if dest.symlink_metadata().is_ok() {
        return refuse("already exists; a backup writes a new directory");
    }
    match dest.parent() {
        Some(parent) if parent.is_dir() => Ok(()),
        _ => refuse("its parent directory does not exist"),
    }
}

/// Where the copy is built: a hidden sibling of `dest`, on the same filesystem for the rename.
fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial"))
}

/// Bytes of every file under `dir`.
fn size_of(dir: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        bytes += if kind.is_dir() {
            size_of(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_must_be_new_absolute_paths_with_a_parent() {
        let dir = tempfile::tempdir().unwrap();
        let message = |path: &Path| check_destination(path).unwrap_err().to_string();
        assert!(message(Path::new("backup")).contains("absolute"));
        assert!(message(dir.path()).contains("already exists"));
        assert!(message(&dir.path().join("a/b")).contains("parent directory"));
        assert!(check_destination(&dir.path().join("new")).is_ok());
        assert_eq!(
            partial_path(&dir.path().join("new")),
            dir.path().join(".new.partial")
        );
    }
}
