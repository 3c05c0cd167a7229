//! The outbox: events sequenced by the processor, read by the pull API and (later) sinks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::data::TicketNumber;
use super::{render, EventDraft};
use crate::model::Position;
use crate::store::{keys, StateBatch, Store, StoreError};

/// Sequences events into a processor step. Only the processor holds one.
pub struct OutboxWriter {
    /// Every event's `source`: the instance's absolute URI (`events.source`).
    source: String,
    instance_id: Uuid,
}

impl OutboxWriter {
    pub fn new(source: String, instance_id: Uuid) -> Self {
        OutboxWriter {
            source,
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
        let number = ticket_number(batch, draft)?;
        let event = render(&self.source, self.instance_id, seq, time, draft, number);
        batch.put_raw(keys::outbox(seq), event);
        Ok(seq)
    }
}

/// The number ticket and conversation events carry (`data.ticket_number`): the number of the
/// ticket the event is about, read from its mirror unless the data names it. `None` when there
/// is nothing to add (another event type, the data says it itself, or a ticket without one).
fn ticket_number(batch: &StateBatch<'_>, draft: &EventDraft) -> Result<Option<u64>, StoreError> {
    if !draft.event_type.carries_ticket_number() {
        return Ok(None);
    }
    let number = match draft.data.ticket_number() {
        TicketNumber::InData => return Ok(None),
        TicketNumber::Known(number) => Some(number),
        TicketNumber::LookUp => batch
            .read(&keys::ticket(&draft.subject), |t: &crate::model::Ticket| {
                t.number
            })?,
    };
    Ok(number.filter(|n| *n != 0))
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
