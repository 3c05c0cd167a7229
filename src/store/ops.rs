//! Counts of what processor steps ask of the state: the storage operations behind each
//! message, which the bench's `processor` mode prints per message.

use std::sync::Mutex;

/// What processor steps asked of the state keyspace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StateOps {
    /// Steps committed.
    pub steps: u64,
    /// Point reads the engine answered (the step knew nothing of the key yet).
    pub engine_reads: u64,
    /// Point reads the step answered from what it had written or read before.
    pub buffered_reads: u64,
    /// Range and prefix reads that went to the engine.
    pub scans: u64,
    /// Writes and removals made, a key written twice counted twice.
    pub puts: u64,
    /// Keys the commits wrote or removed, each once per step.
    pub written: u64,
}

impl StateOps {
    /// What was asked between `earlier` (a reading of the same totals) and these.
    pub fn since(&self, earlier: &StateOps) -> StateOps {
        StateOps {
            steps: self.steps - earlier.steps,
            engine_reads: self.engine_reads - earlier.engine_reads,
            buffered_reads: self.buffered_reads - earlier.buffered_reads,
            scans: self.scans - earlier.scans,
            puts: self.puts - earlier.puts,
            written: self.written - earlier.written,
        }
    }
}

/// The totals, shared by every clone of the store.
#[derive(Default)]
pub(super) struct OpsTotal(Mutex<StateOps>);

impl OpsTotal {
    pub(super) fn add(&self, step: &StateOps) {
        // The lock guards only these numbers: a panicked holder left numbers, not harm.
        let mut total = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        total.steps += step.steps;
        total.engine_reads += step.engine_reads;
        total.buffered_reads += step.buffered_reads;
        total.scans += step.scans;
        total.puts += step.puts;
        total.written += step.written;
    }

    pub(super) fn get(&self) -> StateOps {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
