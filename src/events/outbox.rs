//! The outbox: events sequenced by the processor, read by the pull API and (later) sinks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::{render, EventDraft};
use crate::processor::Position;
use crate::store::{keys, StateBatch, Store, StoreError};

/// Sequences events into a processor step. Only the processor holds one.
pub struct OutboxWriter {
    instance_name: String,
    instance_id: Uuid,
}

impl OutboxWriter {
    pub fn new(instance_name: String, instance_id: Uuid) -> Self {
        OutboxWriter {
            instance_name,
            instance_id,
        }
    }

    /// Adds an event to the step; it is committed and flushed with the step or not at all.
    pub fn push(
        &self,
        batch: &mut StateBatch<'_>,
        time: DateTime<Utc>,
        draft: &EventDraft,
    ) -> Result<u64, StoreError> {
        let seq = batch.next(keys::OUTBOX_SEQ)?;
        let event = render(&self.instance_name, self.instance_id, seq, time, draft);
        batch.put_raw(keys::outbox(seq), event);
        Ok(seq)
    }
}

/// Serves events that are on disk. Cloning is cheap.
#[derive(Clone)]
pub struct OutboxReader {
    store: Store,
    /// The processor's flushed position; readers never see past its outbox sequence number.
    visible: watch::Receiver<Position>,
}

/// One page of events.
pub struct ReadEvents {
    /// Each event's CloudEvent JSON, in sequence order.
    pub events: Vec<crate::store::Value>,
    /// The cursor to pass as `after` next time.
    pub next: u64,
}

impl OutboxReader {
    pub fn new(store: Store, visible: watch::Receiver<Position>) -> Self {
        OutboxReader { store, visible }
    }

    pub fn last_visible(&self) -> u64 {
        self.visible.borrow().outbox
    }

    /// Events after `after`; when there are none yet, waits up to `wait` for some.
    pub async fn read(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ReadEvents, StoreError> {
        let mut visible = self.visible.clone();
        // A closed channel means the processor stopped: serve what is there.
        let _ =
            tokio::time::timeout(wait, visible.wait_for(|position| position.outbox > after)).await;
        let upto = visible.borrow().outbox;
        // A page of recent events is in the block cache; reading it inline is cheaper than a hop
        // to the blocking pool.
        let events = self.store.outbox_read(after, upto, limit)?;
        let next = events.last().map(|(seq, _)| *seq).unwrap_or(after);
        Ok(ReadEvents {
            events: events.into_iter().map(|(_, event)| event).collect(),
            next,
        })
    }
}
