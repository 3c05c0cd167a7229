//! What a sink reports back through the journal: an event it gave up on, an endpoint that
//! turned it away for good.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DedupeKey;

/// An event a sink could not deliver within its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDeadLettered {
    pub sink: String,
    /// The outbox seq and CloudEvent id of the event given up on.
    pub event_seq: u64,
    pub event_id: String,
    pub event_type: String,
    /// The ticket or contact the event is about.
    pub event_subject: String,
    pub attempts: u32,
    pub last_error: String,
    /// How many times the event had been replayed before this give-up (0 the first time):
    /// part of the idempotency key, so a later give-up after a replay is a new record.
    pub generation: u32,
    pub at: DateTime<Utc>,
}

impl SinkDeadLettered {
    /// The journal's idempotency key: a channel id cannot contain ':', so no clash.
    pub fn dedupe_key(&self) -> DedupeKey {
        DedupeKey {
            channel: format!("sink:{}", self.sink),
            external_id: format!("{}/{}", self.event_seq, self.generation),
        }
    }
}

/// A sink whose endpoint answered 410 Gone: it delivers nothing until re-enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDisabled {
    pub sink: String,
    /// The event the endpoint refused (delivered again once the sink is re-enabled).
    pub event_seq: u64,
    pub event_id: String,
    /// The ticket or contact that event is about.
    pub event_subject: String,
    /// The endpoint's answer, such as "answered 410 Gone".
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl SinkDisabled {
    /// The journal's idempotency key: one per disabling (the time tells a later 410 of the same
    /// event, after a re-enable, from a restart journaling the same one again).
    pub fn dedupe_key(&self) -> DedupeKey {
        DedupeKey {
            channel: format!("sink:{}", self.sink),
            external_id: format!(
                "disabled/{}/{}",
                self.event_seq,
                self.at.timestamp_nanos_opt().unwrap_or_default()
            ),
        }
    }
}
