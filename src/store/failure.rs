//! What the store remembers of a storage failure: fjall refuses every write after its first
//! I/O error (it poisons itself and then says only "poisoned"), so the first error is kept to
//! name the cause, and whether it was a full disk, to answer in deskgate's words.

use std::path::Path;
use std::sync::OnceLock;

use super::{StoreError, MEMTABLE_BYTES};

/// The first I/O error a write or sync failed with.
#[derive(Debug, Clone)]
pub struct Failure {
    pub cause: String,
    /// The filesystem had no room left (ENOSPC, or a quota: EDQUOT).
    pub disk_full: bool,
}

/// Passes a write's result through, remembering the first I/O failure. fjall poisons itself
/// after one (also one in its own background work), and every later write then fails as
/// `Poisoned`: those are answered with the first failure, which names the cause.
pub(super) fn note_failure<T>(
    failed: &OnceLock<Failure>,
    db_dir: &Path,
    result: Result<T, fjall::Error>,
) -> Result<T, StoreError> {
    let error = match result {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let failure = match (&error, io_error(&error)) {
        (_, Some(io)) => Failure {
            cause: io.to_string(),
            disk_full: is_full(io),
        },
        // The engine's own flush or compaction failed first; its error went to the log only.
        (fjall::Error::Poisoned, None) => Failure {
            cause: "an earlier write or sync failed (the engine refuses writes after an I/O error)"
                .to_owned(),
            disk_full: nearly_full(db_dir),
        },
        _ => return Err(error.into()),
    };
    let mut first = false;
    let failure = failed.get_or_init(|| {
        first = true;
        failure
    });
    if first {
        tracing::error!(error = %failure.cause, "storage failed; writes are refused until deskgate restarts");
    }
    Err(StoreError::Failed(failure.clone()))
}

/// The I/O error inside an engine error, if that is what it is.
pub(super) fn io_error(error: &fjall::Error) -> Option<&std::io::Error> {
    match error {
        fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => Some(io),
        _ => None,
    }
}

/// Whether the filesystem under `dir` has less room than two memtables' flushes take (the
/// writes the engine does on its own): what a failure it does not name most likely was.
fn nearly_full(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir).is_ok_and(|fs| {
        fs.blocks_available().saturating_mul(fs.fragment_size()) < 2 * MEMTABLE_BYTES
    })
}

pub(super) fn is_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
