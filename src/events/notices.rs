//! The processor's steps for what sinks journal about themselves: an event given up on
//! (`deskgate.sink.dead_lettered`) and a sink its endpoint disabled (`deskgate.sink.disabled`).
//! The sinks read the outbox and journal these records; the events they become are sequenced
//! like every other, so they live with the outbox, below the processor.

use chrono::{DateTime, Utc};

use super::data::EventData;
use super::{EventDraft, OutboxWriter};
use crate::model::{SinkDeadLettered, SinkDisabled};
use crate::store::{StateBatch, StoreError};

/// The processor's step for a journaled give-up: one `deskgate.sink.dead_lettered` event about
/// the same subject as the event given up on. Deterministic: everything comes from the record.
pub fn apply_dead_lettered(
    outbox: &OutboxWriter,
    batch: &mut StateBatch<'_>,
    dead: &SinkDeadLettered,
) -> Result<(), StoreError> {
    let data = EventData::SinkDeadLettered(dead.into());
    announce(outbox, batch, (&dead.event_subject, dead.at), data)
}

/// The processor's step for a journaled disabling: one `deskgate.sink.disabled` event about the
/// subject of the event the endpoint refused.
pub fn apply_disabled(
    outbox: &OutboxWriter,
    batch: &mut StateBatch<'_>,
    disabled: &SinkDisabled,
) -> Result<(), StoreError> {
    let data = EventData::SinkDisabled(disabled.into());
    announce(outbox, batch, (&disabled.event_subject, disabled.at), data)
}

/// One event about `subject` at the record's time `at`.
fn announce(
    outbox: &OutboxWriter,
    batch: &mut StateBatch<'_>,
    (subject, at): (&str, DateTime<Utc>),
    data: EventData,
) -> Result<(), StoreError> {
    outbox.push(batch, at, &EventDraft::new(subject, None, data))?;
    Ok(())
}
