//! Dead letters: events a sink gave up on, kept (with the event itself, so outbox compaction
//! cannot take them away) until they are replayed over the control API.
//!
//! Giving up is journaled as [`SinkDeadLettered`], so the `deskgate.sink.dead_lettered` event
//! is sequenced by the processor like every other event; its idempotency key is the sink, the
//! event seq and the replay generation, so a crash between journaling and the cursor's move
//! never emits it twice.
//! The processor applies that record in [`crate::events::notices`].
//!
//! A sink disabled by its endpoint (410 Gone) is announced the same way, as
//! `deskgate.sink.disabled`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::feed::OutEvent;
use crate::model::SinkDeadLettered;

/// One dead letter as stored and listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event_seq: u64,
    pub event_id: String,
    pub event_type: String,
    pub event_subject: String,
    pub attempts: u32,
    pub last_error: String,
    /// How many replays failed before this entry (0 after the first give-up).
    pub generation: u32,
    pub dead_lettered_at: DateTime<Utc>,
    /// The CloudEvent JSON exactly as it was to be delivered.
    pub event: String,
}

impl DeadLetter {
    pub fn new(event: &OutEvent, attempts: u32, last_error: &str, generation: u32) -> DeadLetter {
        DeadLetter {
            event_seq: event.seq,
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            event_subject: event.subject.clone(),
            attempts,
            last_error: last_error.to_owned(),
            generation,
            dead_lettered_at: Utc::now(),
            event: String::from_utf8_lossy(&event.body).into_owned(),
        }
    }

    /// The event to deliver again.
    pub fn to_event(&self) -> OutEvent {
        OutEvent {
            seq: self.event_seq,
            id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            subject: self.event_subject.clone(),
            time: self.dead_lettered_at,
            body: self.event.clone().into(),
        }
    }

    pub fn record(&self, sink: &str) -> SinkDeadLettered {
        SinkDeadLettered {
            sink: sink.to_owned(),
            event_seq: self.event_seq,
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            event_subject: self.event_subject.clone(),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            generation: self.generation,
            at: self.dead_lettered_at,
        }
    }
}
