//! Counts of what processor steps ask of the state: the storage operations behind each
//! message, which the bench's `processor` mode prints per message.

use std::sync::Mutex;

/// What processor steps asked of the state keyspace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StateOps {
    /// Steps committed.
    pub steps: u64,
    /// Point reads the engine answered (neither the step nor the carry knew the key).
    pub engine_reads: u64,
    /// Point reads the step answered from what it had written or read before.
    pub buffered_reads: u64,
    /// Point reads answered by what earlier steps carried (`carry.rs`).
    pub carried_reads: u64,
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
        self.zip(earlier, |now, then| now - then)
    }

    /// Each count of these and of `other`, combined by `f`.
    fn zip(&self, other: &StateOps, f: impl Fn(u64, u64) -> u64) -> StateOps {
        StateOps {
            steps: f(self.steps, other.steps),
            engine_reads: f(self.engine_reads, other.engine_reads),
            buffered_reads: f(self.buffered_reads, other.buffered_reads),
            carried_reads: f(self.carried_reads, other.carried_reads),
            scans: f(self.scans, other.scans),
            puts: f(self.puts, other.puts),
            written: f(self.written, other.written),
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
        *total = total.zip(step, |sum, more| sum + more);
    }

    pub(super) fn get(&self) -> StateOps {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
