//! The durable journal: every input passes through here before anyone acknowledges it.
//!
//! One writer thread owns all journal writes. Request tasks hand it records through a bounded
//! queue and wait for their answer; the writer takes whatever has queued up (up to
//! `max_batch`), dedupes it against the journal and within the batch, writes it in one atomic
//! batch, calls `flush` (an fdatasync) once, and only then answers every waiter. Flushing from request tasks
//! collapsed throughput on this project's machines (see DESIGN.md); group commit holds it.
//!
//! The writer publishes the highest flushed sequence number on a watch channel; the processor
//! reads only up to it, so nothing downstream ever depends on a record that could still vanish.

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::JournalConfig;
use crate::model::{DedupeKey, Record};
use crate::store::{Store, StoreError};

/// What became of an appended record. Either way it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly written at this sequence number.
    New { seq: u64 },
    /// The channel's external id was already journaled at this sequence number.
    Duplicate { seq: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The queue stayed full for the whole enqueue timeout.
    #[error("the journal is busy")]
    Busy,
    /// The flush did not complete within the ack timeout; the record may still be kept.
    #[error("the journal did not confirm the write in time")]
    Timeout,
    #[error("the journal is shutting down")]
    Closed,
    /// The write failed; the cause (store text naming files and keys) is in the log only.
    #[error("{}", if *.disk_full { "the journal could not write: the state directory's disk is full" } else { "the journal could not write (the cause is in deskgate's log)" })]
    Write { disk_full: bool },
}

struct Append {
    key: DedupeKey,
    /// Keys of which, already journaled, this record is a duplicate too.
    earlier: Vec<DedupeKey>,
    record: Record,
    reply: oneshot::Sender<Result<Appended, JournalError>>,
}

/// Cheap to clone; every request task holds one.
#[derive(Clone)]
pub struct JournalHandle {
    queue: mpsc::Sender<Append>,
    enqueue_timeout: Duration,
    ack_timeout: Duration,
    durable: watch::Receiver<u64>,
    max_batch: usize,
}

/// A record in the writer's queue, its answer still to come.
pub struct Enqueued {
    answer: oneshot::Receiver<Result<Appended, JournalError>>,
    ack_timeout: Duration,
}

impl Enqueued {
    /// Waits until the record is flushed (or the writer refused it).
    pub async fn answer(self) -> Result<Appended, JournalError> {
        match tokio::time::timeout(self.ack_timeout, self.answer).await {
            Err(_) => Err(JournalError::Timeout),
            Ok(Err(_)) => Err(JournalError::Closed),
            Ok(Ok(result)) => result,
        }
    }
}

impl JournalHandle {
    /// Journals a record and returns once it is flushed to disk.
    pub async fn append(&self, record: Record) -> Result<Appended, JournalError> {
        self.enqueue(record).await?.answer().await
    }

    /// Puts a record in the writer's queue (waiting for room, at most the enqueue timeout) and
    /// returns without waiting for the flush: records enqueued one after another are journaled
    /// in that order, and still share group commits. [`Enqueued::answer`] waits for the flush.
    pub async fn enqueue(&self, record: Record) -> Result<Enqueued, JournalError> {
        let (reply, answer) = oneshot::channel();
        let append = Append {
            key: DedupeKey::of(&record),
            earlier: DedupeKey::earlier(&record),
            record,
            reply,
        };
        let permit = match tokio::time::timeout(self.enqueue_timeout, self.queue.reserve()).await {
            Err(_) => return Err(JournalError::Busy),
            Ok(Err(_)) => return Err(JournalError::Closed),
            Ok(Ok(permit)) => permit,
        };
        permit.send(append);
        Ok(Enqueued {
            answer,
            ack_timeout: self.ack_timeout,
        })
    }

    /// The highest sequence number known to be on disk.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// The most records one group commit takes (`journal.max_batch`).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Records waiting for the writer.
    pub fn backlog(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// Starts the writer thread. It stops once every [`JournalHandle`] is dropped and the queue is
/// drained; join the returned handle to wait for the last flush.
pub fn start(
    store: Store,
    config: &JournalConfig,
) -> Result<(JournalHandle, thread::JoinHandle<()>), StoreError> {
    let last = store.journal_last_seq()?;
    let (queue, receiver) = mpsc::channel(config.queue_capacity);
    let (durable_tx, durable) = watch::channel(last);
    let writer = Writer {
        store,
        next_seq: last + 1,
        max_batch: config.max_batch,
        durable: durable_tx,
    };
    let thread = thread::Builder::new()
        .name("journal-writer".to_owned())
        .spawn(move || writer.run(receiver))
        .expect("spawning a thread at start-up succeeds unless the process is out of resources");
    let handle = JournalHandle {
        queue,
        enqueue_timeout: Duration::from_millis(config.enqueue_timeout_ms),
        ack_timeout: Duration::from_millis(config.ack_timeout_ms),
        durable,
        max_batch: config.max_batch,
    };
    Ok((handle, thread))
}

struct Writer {
    store: Store,
    next_seq: u64,
    max_batch: usize,
    durable: watch::Sender<u64>,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Append>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = receiver.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
        tracing::debug!("journal writer stopped");
    }

    /// Writes and flushes one group, then answers every waiter in it.
    fn commit(&mut self, batch: &mut Vec<Append>) {
        let outcomes = match self.write(batch) {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::error!(%error, records = batch.len(), "journal write failed");
                let disk_full = error.is_disk_full();
                for append in batch.drain(..) {
                    let _ = append.reply.send(Err(JournalError::Write { disk_full }));
                }
                return;
            }
        };
        for (append, outcome) in batch.drain(..).zip(outcomes) {
            // The requester may have timed out and gone; the record is kept regardless.
            let _ = append.reply.send(Ok(outcome));
        }
    }

    /// The seq of the record this one duplicates: one earlier in the same batch or already
    /// journaled, under its own key or one of its earlier keys.
    fn duplicate_of(
        &self,
        seen: &HashMap<&DedupeKey, u64>,
        append: &Append,
    ) -> Result<Option<u64>, StoreError> {
        for key in std::iter::once(&append.key).chain(&append.earlier) {
            if let Some(&seq) = seen.get(key) {
                return Ok(Some(seq));
            }
            if let Some(seq) = self.store.journal_lookup(key)? {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    fn write(&mut self, batch: &[Append]) -> Result<Vec<Appended>, StoreError> {
        let mut seen: HashMap<&DedupeKey, u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut fresh = Vec::new();
        let mut seq = self.next_seq;
        for append in batch {
            if let Some(existing) = self.duplicate_of(&seen, append)? {
                outcomes.push(Appended::Duplicate { seq: existing });
            } else {
                seen.insert(&append.key, seq);
                fresh.push((seq, &append.key, &append.record));
                outcomes.push(Appended::New { seq });
                seq += 1;
            }
        }
        if !fresh.is_empty() {
            self.store.journal_append(fresh)?;
            // Once applied, the records are visible and their seqs taken, even if the flush
            // below fails: a later flush makes them durable.
            self.next_seq = seq;
        }
        self.store.flush()?;
        self.durable.send_replace(self.next_seq - 1);
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests;
