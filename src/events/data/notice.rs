//! The data of events that carry no message: delivery statuses and other channel notices,
//! quarantined input, and sinks' dead letters.

use schemars::JsonSchema;
use serde::Serialize;

use super::Micros;
use crate::model::Sender;

/// `deskgate.message.delivery_status` (a message the business sent was sent, delivered,
/// read, played or failed) and `deskgate.channel.event` (anything else a channel reported
/// that is not a message: template, account, call notices, deletions).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ChannelNotice {
    /// Its position in deskgate's journal.
    pub journal_seq: u64,
    /// The channel that reported it.
    pub channel: String,
    /// The channel's idempotency key for it (a WhatsApp status: `wamid:status`).
    pub external_id: String,
    /// What the platform called it (`message_deliveries`, `statuses`, `account_update`, …).
    pub name: String,
    /// For delivery statuses: `sent`, `delivered`, `read`, `played` or `failed`; else `null`.
    pub status: Option<String>,
    /// The platform's ids of the messages it is about.
    pub message_ids: Vec<String>,
    /// The customer it concerns, when the platform says; else `null`.
    pub customer: Option<Sender>,
    /// The conversation it concerns, when deskgate knows it; else `null`.
    pub conversation_id: Option<String>,
    /// That conversation's ticket; else `null`.
    pub ticket_id: Option<String>,
    /// The thread key it names, when it names one; else `null`.
    pub thread_id: Option<String>,
    /// The item as received, for what has no field of its own (errors, pricing, watermarks).
    pub detail: serde_json::Value,
    /// When the platform says it happened; `null` when it does not say.
    pub occurred_at: Option<Micros>,
    /// When deskgate accepted it.
    pub received_at: Micros,
}

/// `deskgate.inbound.quarantined`: input set aside with its reason; it is listed and can be
/// retried through the control API.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct InboundQuarantined {
    /// The journal position of the record set aside.
    pub journal_seq: u64,
    /// The channel's idempotency key for it, when known; else `null`.
    pub external_id: Option<String>,
    /// Why it was set aside.
    pub reason: String,
    /// The blob holding its raw bytes, when there are any; else `null`.
    pub raw_blob: Option<String>,
}

/// `deskgate.sink.dead_lettered`: a sink gave up on delivering an event; it is on the sink's
/// dead-letter list and can be replayed. The event's `subject` is the original event's.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SinkDeadLettered {
    /// The sink's name.
    pub sink: String,
    /// The outbox sequence number of the event given up on.
    pub event_seq: u64,
    /// Its CloudEvent `id`.
    pub event_id: String,
    /// Its CloudEvent `type`.
    pub event_type: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// How many replays of the event had failed before this give-up (0 the first time).
    pub generation: u32,
}

/// `deskgate.sink.disabled`: a webhook endpoint answered `410 Gone`, so its sink stopped
/// delivering until `POST /v1/control/sinks/{name}/enable`; then it resumes with the refused
/// event. The event's `subject` is the refused event's.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SinkDisabled {
    /// The sink's name.
    pub sink: String,
    /// The outbox sequence number of the event the endpoint refused.
    pub event_seq: u64,
    /// Its CloudEvent `id`.
    pub event_id: String,
    /// The endpoint's answer, such as "answered 410 Gone".
    pub reason: String,
}

impl From<&crate::model::SinkDisabled> for SinkDisabled {
    fn from(disabled: &crate::model::SinkDisabled) -> Self {
        SinkDisabled {
            sink: disabled.sink.clone(),
            event_seq: disabled.event_seq,
            event_id: disabled.event_id.clone(),
            reason: disabled.reason.clone(),
        }
    }
}

impl From<&crate::model::SinkDeadLettered> for SinkDeadLettered {
    fn from(dead: &crate::model::SinkDeadLettered) -> Self {
        SinkDeadLettered {
            sink: dead.sink.clone(),
            event_seq: dead.event_seq,
            event_id: dead.event_id.clone(),
            event_type: dead.event_type.clone(),
            attempts: dead.attempts,
            last_error: dead.last_error.clone(),
            generation: dead.generation,
        }
    }
}
