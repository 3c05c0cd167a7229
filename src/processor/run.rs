//! The processor's thread: applies what the journal writer made durable, step by step, and
//! publishes each step once it is durable itself.
//!
//! A step is committed without a sync of its own. The journal writer syncs the same
//! write-ahead log for every group of records it acknowledges, and a sync makes every write
//! before it durable, so under load the writer's next group commit covers the processor's last
//! step for free; only when none comes within [`COVER_WAIT`] (an idle journal, or a backlog
//! replayed at start-up) does the processor sync alone. Its position (and with it the events
//! readers see, the outbound items the sender takes and what retention may drop) is published
//! only once covered: nobody outside sees a step that a power cut could take back.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::replay::Replay;
use super::{Committed, Position, Processor};

/// How long a committed step waits for another writer's sync before the processor syncs it
/// alone. Under ingest load the journal writer syncs every millisecond or two; at idle this is
/// what a lone message's events wait beyond their own step.
pub const COVER_WAIT: Duration = Duration::from_millis(2);

/// Starts the processor on a thread of its own. It runs until the journal writer has stopped
/// and everything it wrote is applied, publishing its durable position on `visible` after every
/// step (start it with the position read at start-up); join the handle to wait for the end.
pub fn start(
    processor: Processor,
    durable: watch::Receiver<u64>,
    visible: watch::Sender<Position>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("processor".to_owned())
        .spawn(move || run(processor, durable, visible))
        .expect("spawning a thread at start-up succeeds unless the process is out of resources")
}

/// Steps committed and not yet covered by a sync: the latest (its mark covers the earlier
/// ones) and when the oldest was committed.
struct Unsynced {
    latest: Committed,
    since: Instant,
}

fn run(processor: Processor, mut durable: watch::Receiver<u64>, visible: watch::Sender<Position>) {
    let store = processor.store.clone();
    let mut cursor = visible.borrow().cursor;
    let mut writer_stopped = false;
    let mut replay = Replay::new(cursor, *durable.borrow());
    let mut unsynced: Option<Unsynced> = None;
    loop {
        if let Some(pending) = &unsynced {
            let covered = store.is_synced(pending.latest.mark)
                || (pending.since.elapsed() >= COVER_WAIT && sync_alone(&processor));
            if covered {
                visible.send_replace(pending.latest.position);
                unsynced = None;
                processor.after_durable();
            }
        }
        let target = *durable.borrow_and_update();
        if cursor < target {
            // Records that panic are quarantined inside the step; this catches the rest (a bug
            // in the step itself), which must not end processing for good.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                processor.commit_step(cursor, target)
            }));
            match step {
                Ok(Ok(Some(latest))) => {
                    cursor = latest.position.cursor;
                    replay.applied(cursor);
                    let since = unsynced.map_or_else(Instant::now, |pending| pending.since);
                    unsynced = Some(Unsynced { latest, since });
                }
                // Nothing left to read below the target (retention got there first).
                Ok(Ok(None)) => cursor = target,
                Ok(Err(error)) => {
                    // Once the writer has stopped, nothing will change: the journal keeps the
                    // rest for the next start.
                    if durable.has_changed().is_err() {
                        tracing::error!(%error, cursor, "processor step failed; stopping");
                        break;
                    }
                    tracing::error!(%error, cursor, "processor step failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(_) => {
                    tracing::error!(cursor, "processor step panicked; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            continue;
        }
        if let Some(pending) = &unsynced {
            // Caught up: wait for the next sync (it may cover this step, or bring records),
            // at most until it is time to sync alone.
            let left = COVER_WAIT.saturating_sub(pending.since.elapsed());
            store.wait_for_sync(pending.latest.mark, left);
            continue;
        }
        if writer_stopped {
            break;
        }
        // The watch channel works without a runtime: block this thread until the writer
        // publishes a new durable position or stops.
        writer_stopped = futures::executor::block_on(durable.changed()).is_err();
    }
    tracing::debug!(cursor, "processor stopped");
}

/// Syncs the processor's own writes; false (after a pause) when the sync failed, so that the
/// step stays unpublished and the loop tries again.
fn sync_alone(processor: &Processor) -> bool {
    match processor.store.flush() {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%error, "syncing the processor's steps failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
            false
        }
    }
}
