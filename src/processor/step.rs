//! One processor step: a run of journal records applied to a state batch, sealed with the
//! new cursor, and committed (at once, or on the pipeline's thread: `pipeline.rs`).

use std::sync::atomic::Ordering;

use super::{Processor, RecordError, QUARANTINED};
use crate::live::Live;
use crate::model::{Position, Record};
use crate::store::{keys, SealedBatch, Seed, StateBatch, StoreError};

/// A step applied and sealed, not yet committed.
pub(super) struct Computed {
    pub(super) sealed: SealedBatch,
    /// For the next step to start from while this one lands.
    pub(super) seed: Seed,
    pub(super) position: Position,
}

/// A step committed but not yet synced.
#[derive(Debug, Clone, Copy)]
pub(super) struct Committed {
    pub(super) position: Position,
    /// The store's write mark after the commit: the step is durable once a sync covers it.
    pub(super) mark: u64,
}

impl Processor {
    /// Where the committed state stands.
    pub fn position(&self) -> Result<Position, StoreError> {
        Ok(Position {
            cursor: self.store.state_get(keys::CURSOR)?.unwrap_or(0),
            outbox: self.store.state_get(keys::OUTBOX_SEQ)?.unwrap_or(0),
        })
    }

    /// Applies the journal records after `cursor` up to `durable`, at most one batch of them,
    /// and makes the result durable. Blocking: run it off the async workers.
    pub fn step(&self, cursor: u64, durable: u64) -> Result<Position, StoreError> {
        self.finish_erasures()?;
        let position = match self.commit_step(cursor, durable)? {
            Some(step) => step.position,
            None => return self.position(),
        };
        self.store.flush()?;
        self.after_durable();
        Ok(position)
    }

    /// Applies the journal records after `cursor` up to `durable`, at most one batch of them,
    /// and commits the result with the new cursor in one atomic batch, without syncing it:
    /// the journal holds every record applied, so a step lost to a power cut is applied again,
    /// identically. Readers must not see the step before a sync covers its mark. `None` when
    /// there was nothing to apply.
    fn commit_step(&self, cursor: u64, durable: u64) -> Result<Option<Committed>, StoreError> {
        let _whole = self.gate.hold();
        let Some(step) = self.compute_step(cursor, durable, &mut None)? else {
            return Ok(None);
        };
        step.sealed.land(&self.store, None)?;
        Ok(Some(Committed {
            position: step.position,
            mark: self.store.write_mark(),
        }))
    }

    /// Applies the journal records after `cursor` up to `durable`, at most one batch of them,
    /// to a batch that starts from `seed` when one is given (the step before, perhaps still
    /// landing), and seals it with the new cursor. The caller holds the write gate until the
    /// step has landed. `None` (and `seed` left where it was) when there was nothing to apply.
    pub(super) fn compute_step(
        &self,
        cursor: u64,
        durable: u64,
        seed: &mut Option<Seed>,
    ) -> Result<Option<Computed>, StoreError> {
        let items = self.store.journal_read(cursor, durable, self.batch_size)?;
        let Some(last) = items.last().map(|item| item.seq) else {
            return Ok(None);
        };
        // One version of the rules for the whole step, whatever a reload does meanwhile.
        let live = self.live.current();
        let mut batch = match seed.take() {
            Some(seed) => self.store.state_batch_after(seed),
            None => self.store.state_batch(),
        };
        for item in items {
            let savepoint = batch.savepoint();
            if let Ok(record @ Record::Quarantine(_)) = &item.record {
                batch.count(QUARANTINED, &[("channel", record.channel())], 1);
            }
            let applied = match item.record {
                Ok(record) => self
                    .apply_guarded(&live, &mut batch, item.seq, &record)
                    .map_err(|e| (Some(record), e)),
                Err(error) => Err((None, RecordError::Undecodable(error))),
            };
            match applied {
                Ok(()) => {}
                // The database itself failing is not the record's fault: retry the whole step.
                Err((_, RecordError::Store(error))) if error.is_storage_failure() => {
                    return Err(error)
                }
                Err((record, error)) => {
                    batch.rollback_to(savepoint);
                    self.quarantine(&mut batch, item.seq, record.as_ref(), &error.to_string())?;
                    let channel = record.as_ref().map(|r| r.channel()).unwrap_or("unknown");
                    batch.count(QUARANTINED, &[("channel", channel)], 1);
                }
            }
        }
        batch.put(keys::CURSOR.to_vec(), &last);
        let outbox = batch.get_u64(keys::OUTBOX_SEQ)?;
        let (sealed, seed) = batch.seal();
        Ok(Some(Computed {
            sealed,
            seed,
            position: Position {
                cursor: last,
                outbox,
            },
        }))
    }

    /// What may follow only once every committed step is durable: the journal redaction of
    /// erasures (a redacted record must never be applied again by a replay). A failure here
    /// must not undo the steps; the next call finishes what is left.
    pub(super) fn after_durable(&self) {
        if !self.erasing.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Err(error) = self.finish_erasures() {
            self.erasing.store(true, Ordering::Release);
            tracing::error!(%error, "journal redaction for an erasure failed; retrying next step");
        }
    }

    /// Applies one record; a panic (a bug, never an input's right) becomes an error so that the
    /// record is quarantined instead of stopping every record behind it.
    fn apply_guarded(
        &self,
        live: &Live,
        batch: &mut StateBatch<'_>,
        seq: u64,
        record: &Record,
    ) -> Result<(), RecordError> {
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.apply(live, batch, seq, record)
        }));
        match applied {
            Ok(result) => result.map_err(RecordError::Store),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(RecordError::Panicked(what))
            }
        }
    }
}
