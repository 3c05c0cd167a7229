//! The processor's thread: applies what the journal writer made durable, step by step, and
//! publishes each step once it is durable itself.
//!
//! A step is committed without a sync of its own. The journal writer syncs the same
//! write-ahead log for every group of records it acknowledges, and a sync makes every write
//! before it durable, so under load the writer's next group commit covers the processor's last
//! step for free; only when none comes within [`COVER_WAIT`] (an idle journal), or within
//! [`BACKLOG_COVER_WAIT`] while records still wait (a backlog replayed at start-up), does the
//! processor sync alone. Its position (and with it the events
//! readers see, the outbound items the sender takes and what retention may drop) is published
//! only once covered: nobody outside sees a step that a power cut could take back.
//!
//! While records wait, steps run two at a time: one is committed on the pipeline's thread
//! (`pipeline.rs`) while the next is applied on top of it. The processor holds the write gate
//! for as long as a step is applied or in flight, and lets it go (with nothing in flight)
//! whenever it catches up, after a step that erases a contact (until the journal redaction
//! that follows it is done, no step is in flight), and at least every [`GATE_SLICE`], so that
//! a backup or retention waits no longer than that.

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::pipeline::Pipeline;
use super::replay::Replay;
use super::{Committed, Position, Processor};
use crate::store::Seed;

/// How long a committed step waits for another writer's sync before the processor syncs it
/// alone. Under ingest load the journal writer syncs every millisecond or two; at idle this is
/// what a lone message's events wait beyond their own step.
pub const COVER_WAIT: Duration = Duration::from_millis(2);

/// How long committed steps wait for another writer's sync while records are still waiting
/// to be applied (a backlog at start-up): a sync of its own stalls the processor and the
/// commit thread (the engine holds its log's lock through it), where the records behind
/// gain nothing from being published a few milliseconds sooner.
const BACKLOG_COVER_WAIT: Duration = Duration::from_millis(50);

/// The longest the processor holds the write gate while records keep coming.
const GATE_SLICE: Duration = Duration::from_millis(20);

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

/// The write gate while the processor holds it, with the seed of the step in flight.
struct Held<'a> {
    _gate: MutexGuard<'a, ()>,
    seed: Option<Seed>,
    since: Instant,
}

/// Where the loop stands; `landed` is the cursor of the last step that landed, where a step
/// that failed to land sends the cursor back.
struct Progress {
    cursor: u64,
    landed: u64,
    unsynced: Option<Unsynced>,
}

impl Progress {
    /// Publishes the last step that landed once a sync covers it, syncing alone when no other
    /// writer's sync came within `wait`.
    fn publish(
        &mut self,
        processor: &Processor,
        wait: Duration,
        visible: &watch::Sender<Position>,
    ) {
        let Some(pending) = &self.unsynced else {
            return;
        };
        let covered = processor.store.is_synced(pending.latest.mark)
            || (pending.since.elapsed() >= wait && sync_alone(processor));
        if covered {
            visible.send_replace(pending.latest.position);
            self.unsynced = None;
            processor.after_durable();
        }
    }

    /// Takes the landing of the step in flight, if any: false (after a pause) when it failed,
    /// with the cursor back where the last landed step left it.
    fn settle(&mut self, pipeline: &mut Pipeline) -> bool {
        match pipeline.wait() {
            None => true,
            Some(Ok(latest)) => {
                self.landed = latest.position.cursor;
                let since = self.unsynced.take().map_or_else(Instant::now, |p| p.since);
                self.unsynced = Some(Unsynced { latest, since });
                true
            }
            Some(Err(error)) => {
                self.cursor = self.landed;
                tracing::error!(%error, cursor = self.cursor, "processor step failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
                false
            }
        }
    }
}

fn run(processor: Processor, durable: watch::Receiver<u64>, visible: watch::Sender<Position>) {
    let store = processor.store.clone();
    std::thread::scope(|scope| {
        let mut pipeline = Pipeline::start(scope, &store);
        run_steps(&processor, &mut pipeline, durable, &visible);
    });
}

fn run_steps(
    processor: &Processor,
    pipeline: &mut Pipeline,
    mut durable: watch::Receiver<u64>,
    visible: &watch::Sender<Position>,
) {
    let cursor = visible.borrow().cursor;
    let mut at = Progress {
        cursor,
        landed: cursor,
        unsynced: None,
    };
    let mut writer_stopped = false;
    let mut replay = Replay::new(cursor, *durable.borrow());
    let mut held: Option<Held<'_>> = None;
    loop {
        // Publishing may redact the journal after an erasure (`after_durable`), which commits
        // state of its own: nothing may be in flight or seeded then. This also lands a step
        // that erases alone, before the next is applied, so the redaction never sees a later
        // step's erasure.
        if processor.erasing.load(Ordering::Acquire) && (held.is_some() || pipeline.in_flight()) {
            at.settle(pipeline);
            held = None;
        }
        let wait = match at.cursor < *durable.borrow() {
            true => BACKLOG_COVER_WAIT,
            false => COVER_WAIT,
        };
        at.publish(processor, wait, visible);
        let target = *durable.borrow_and_update();
        if at.cursor < target {
            let applied = apply_next(processor, pipeline, &mut at, &mut held, target);
            match applied {
                Ok(()) => replay.applied(at.cursor),
                // Once the writer has stopped, nothing will change: the journal keeps the
                // rest for the next start.
                Err(error) if durable.has_changed().is_err() => {
                    tracing::error!(%error, cursor = at.cursor, "processor step failed; stopping");
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, cursor = at.cursor, "processor step failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            continue;
        }
        // Caught up: let the gate go, with nothing in flight.
        if held.is_some() || pipeline.in_flight() {
            at.settle(pipeline);
            held = None;
            continue;
        }
        if let Some(pending) = &at.unsynced {
            // Wait for the next sync (it may cover this step, or bring records), at most until
            // it is time to sync alone.
            let left = COVER_WAIT.saturating_sub(pending.since.elapsed());
            processor.store.wait_for_sync(pending.latest.mark, left);
            continue;
        }
        if writer_stopped {
            break;
        }
        // The watch channel works without a runtime: block this thread until the writer
        // publishes a new durable position or stops.
        writer_stopped = futures::executor::block_on(durable.changed()).is_err();
    }
    // A step still in flight lands (or not) before the thread ends; what landed without a
    // sync is the journal's to replay.
    at.settle(pipeline);
    tracing::debug!(cursor = at.cursor, "processor stopped");
}

/// Applies the next step, behind the one in flight, and hands it to the pipeline. An error is
/// a step that could not be applied; the cursor is then back where the last landed step left
/// it.
fn apply_next<'a>(
    processor: &'a Processor,
    pipeline: &mut Pipeline,
    at: &mut Progress,
    held: &mut Option<Held<'a>>,
    target: u64,
) -> Result<(), String> {
    let hold = held.get_or_insert_with(|| Held {
        _gate: processor.gate.hold(),
        seed: None,
        since: Instant::now(),
    });
    // Records that panic are quarantined inside the step; this catches the rest (a bug in the
    // step itself), which must not end processing for good.
    let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        processor.compute_step(at.cursor, target, &mut hold.seed)
    }));
    match step {
        Ok(Ok(Some(step))) => {
            // This step was applied on top of the one in flight: if that one does not land,
            // neither may this.
            if !at.settle(pipeline) {
                *held = None;
                return Ok(());
            }
            pipeline.send(step.sealed, step.position);
            at.cursor = step.position.cursor;
            hold.seed = Some(step.seed);
            // A step that erases lands before anything else happens: the loop drains the
            // pipeline while the erasing flag is set.
            if hold.since.elapsed() >= GATE_SLICE {
                at.settle(pipeline);
                *held = None;
            }
            Ok(())
        }
        // Nothing left to read below the target (retention got there first).
        Ok(Ok(None)) => {
            at.cursor = target;
            Ok(())
        }
        failed => {
            // What is in flight lands first: the retry starts where it ended.
            at.settle(pipeline);
            *held = None;
            at.cursor = at.landed;
            Err(match failed {
                Ok(Err(error)) => error.to_string(),
                _ => "the step panicked".to_owned(),
            })
        }
    }
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
