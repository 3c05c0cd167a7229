//! The processor's second stage: a thread that commits each sealed step while the processor
//! applies the next one on top of it.
//!
//! A step's commit (encoding what it wrote, the engine's write-ahead log and memtables, the
//! carry) was a third of the processor's time, spent while the records behind it waited. Here
//! it lands on a thread of its own, one step at a time and in order; the processor hands over
//! the next step only once the one before has landed, so at most one is in flight, and a step
//! whose predecessor failed to land is thrown away with it (the journal still holds both).

use std::sync::mpsc;
use std::thread::Scope;

use super::Committed;
use crate::model::Position;
use crate::store::{SealedBatch, Store};

/// A step that did not land, and why.
pub(super) type Landing = Result<Committed, String>;

struct Job {
    sealed: SealedBatch,
    position: Position,
}

/// The processor's end of the commit thread.
pub(super) struct Pipeline {
    jobs: mpsc::SyncSender<Job>,
    landings: mpsc::Receiver<Landing>,
    in_flight: bool,
}

impl Pipeline {
    /// Starts the commit thread within `scope`; it ends when the pipeline is dropped.
    pub(super) fn start<'scope>(scope: &'scope Scope<'scope, '_>, store: &'scope Store) -> Self {
        let (jobs, inbox) = mpsc::sync_channel(1);
        let (outbox, landings) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("processor-commit".to_owned())
            .spawn_scoped(scope, move || commit_all(store, inbox, outbox))
            .expect(
                "spawning a thread at start-up succeeds unless the process is out of resources",
            );
        Pipeline {
            jobs,
            landings,
            in_flight: false,
        }
    }

    /// Whether a step is being committed.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Hands a sealed step to the commit thread. The step before must have been waited for.
    pub(super) fn send(&mut self, sealed: SealedBatch, position: Position) {
        debug_assert!(!self.in_flight, "one step in flight at a time");
        // The send fails only when the thread has ended (a panic outside the commit it
        // guards): the wait that follows reports that.
        let _ = self.jobs.send(Job { sealed, position });
        self.in_flight = true;
    }

    /// Waits for the step in flight to land; `None` when none is in flight.
    pub(super) fn wait(&mut self) -> Option<Landing> {
        if !std::mem::take(&mut self.in_flight) {
            return None;
        }
        let landing = self.landings.recv();
        Some(
            landing.unwrap_or_else(|_| Err("the processor's commit thread has stopped".to_owned())),
        )
    }
}

/// The commit thread: lands each step in turn and reports it.
fn commit_all(store: &Store, jobs: mpsc::Receiver<Job>, landings: mpsc::SyncSender<Landing>) {
    // The carry's generation after the last step landed: the step behind it reads from there.
    let mut after = None;
    for Job { sealed, position } in jobs {
        let landed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sealed.land(store, after)));
        let landing = match landed {
            Ok(Ok(generation)) => {
                after = Some(generation);
                Ok(Committed {
                    position,
                    mark: store.write_mark(),
                })
            }
            Ok(Err(error)) => {
                after = None;
                Err(error.to_string())
            }
            Err(_) => {
                after = None;
                // Whether the engine took the batch is not known here.
                store.forget_carried();
                Err("committing the step panicked".to_owned())
            }
        };
        if landings.send(landing).is_err() {
            break;
        }
    }
}
