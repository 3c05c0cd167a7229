//! Ticket and contact events: their types, their typed `data` ([`data`]) and its JSON Schemas,
//! the CloudEvents 1.0 envelope, and the outbox they are sequenced into.
//!
//! Events are written by the processor inside the same atomic step as the effects they
//! describe, and become visible to readers only after that step is flushed.

pub mod data;
pub mod notices;
mod outbox;
pub mod sinks;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use outbox::{OutboxReader, OutboxWriter, ReadEvents};

/// Every kind of event deskgate emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    ContactCreated,
    ContactUpdated,
    ContactMerged,
    ContactMergeSuggested,
    ContactErased,
    TicketCreated,
    TicketMessageAdded,
    InboundQuarantined,
    SinkDeadLettered,
    SinkDisabled,
    TicketAssigned,
    TicketStatusTrigger,
    TicketStatusChanged,
    TicketActionRequested,
    TicketMerged,
    /// A mail proved two tickets to be one thread; the store or an agent decides.
    TicketMergeSuggested,
    TicketSplit,
    TicketDeleted,
    ConversationMessageAdded,
    ConversationClosed,
    /// A closed conversation is open again.
    ConversationReopened,
    ConversationSpam,
    /// A conversation marked as spam was unmarked.
    ConversationSpamUndone,
    /// A contact flagged as a spam sender was unflagged.
    ContactSpamUndone,
    /// A message the business sent was sent, delivered, read, played or failed.
    MessageDeliveryStatus,
    /// Something a channel reported that is not a message (template, account, call notices).
    ChannelEvent,
    OutboundSent,
    OutboundFailed,
    OutboundSuppressed,
    OutboundChatMessage,
}

impl EventType {
    /// The event type named `name` (`deskgate.ticket.created`).
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.as_str() == name)
    }

    /// Ticket and conversation events carry the ticket's number, which the outbox adds.
    pub fn carries_ticket_number(self) -> bool {
        let name = self.as_str();
        name.starts_with("deskgate.ticket.") || name.starts_with("deskgate.conversation.")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ContactCreated => "deskgate.contact.created",
            EventType::ContactUpdated => "deskgate.contact.updated",
            EventType::ContactMerged => "deskgate.contact.merged",
            EventType::ContactMergeSuggested => "deskgate.contact.merge_suggested",
            EventType::ContactErased => "deskgate.contact.erased",
            EventType::TicketCreated => "deskgate.ticket.created",
            EventType::TicketMessageAdded => "deskgate.ticket.message_added",
            EventType::InboundQuarantined => "deskgate.inbound.quarantined",
            EventType::SinkDeadLettered => "deskgate.sink.dead_lettered",
            EventType::SinkDisabled => "deskgate.sink.disabled",
            EventType::TicketAssigned => "deskgate.ticket.assigned",
            EventType::TicketStatusTrigger => "deskgate.ticket.status_trigger",
            EventType::TicketStatusChanged => "deskgate.ticket.status_changed",
            EventType::TicketActionRequested => "deskgate.ticket.action_requested",
            EventType::TicketMerged => "deskgate.ticket.merged",
            EventType::TicketMergeSuggested => "deskgate.ticket.merge_suggested",
            EventType::TicketSplit => "deskgate.ticket.split",
            EventType::TicketDeleted => "deskgate.ticket.deleted",
            EventType::ConversationMessageAdded => "deskgate.conversation.message_added",
            EventType::ConversationClosed => "deskgate.conversation.closed",
            EventType::ConversationReopened => "deskgate.conversation.reopened",
            EventType::ConversationSpam => "deskgate.conversation.spam",
            EventType::ConversationSpamUndone => "deskgate.conversation.spam_undone",
            EventType::ContactSpamUndone => "deskgate.contact.spam_undone",
            EventType::MessageDeliveryStatus => "deskgate.message.delivery_status",
            EventType::ChannelEvent => "deskgate.channel.event",
            EventType::OutboundSent => "deskgate.outbound.sent",
            EventType::OutboundFailed => "deskgate.outbound.failed",
            EventType::OutboundSuppressed => "deskgate.outbound.suppressed",
            EventType::OutboundChatMessage => "deskgate.outbound.chat_message",
        }
    }
}

/// An event before the outbox gives it a sequence number and id.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub event_type: EventType,
    /// The ticket or contact the event is about.
    pub subject: String,
    /// The channel it came from (the envelope's `channel` extension).
    pub channel: Option<String>,
    /// The typed `data`: build drafts with [`EventDraft::new`].
    pub(in crate::events) data: data::EventData,
}

impl EventDraft {
    /// A draft of the event whose `data` is `data`; its type follows from the data.
    pub fn new(subject: impl Into<String>, channel: Option<&str>, data: data::EventData) -> Self {
        EventDraft {
            event_type: data.event_type(),
            subject: subject.into(),
            channel: channel.map(str::to_owned),
            data,
        }
    }
}

/// The CloudEvents 1.0 JSON envelope as written to the outbox and served to readers.
#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    /// The JSON Schema of `data`: `{source}/v1/schemas/events/{type}.json`.
    dataschema: String,
    /// The CloudEvents sequence extension: the outbox sequence number, which orders the events
    /// of this source (one per instance) and is contiguous in it. A string compared
    /// lexicographically, so the number is zero-padded to 20 digits.
    sequence: String,
    /// A deskgate extension: the channel the event came from, when it came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: Numbered<'a>,
}

/// An event's `data` as written: the typed data, and the ticket's number where the outbox
/// adds it (`outbox::ticket_number`). Serialised straight from the types, once.
#[derive(Serialize)]
struct Numbered<'a> {
    #[serde(flatten)]
    data: &'a data::EventData,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_number: Option<u64>,
}

/// Renders an event. `source` is the instance's absolute URI (`events.source`). Its id is
/// derived from the instance and the sequence number, so the same step replayed after a crash
/// produces the same id.
pub fn render(
    source: &str,
    instance_id: Uuid,
    seq: u64,
    time: DateTime<Utc>,
    draft: &EventDraft,
    ticket_number: Option<u64>,
) -> Vec<u8> {
    let mut dataschema = String::with_capacity(source.len() + 64);
    dataschema.push_str(source);
    data::schema::push_path(&mut dataschema, draft.event_type);
    let event = CloudEvent {
        specversion: "1.0",
        id: crate::ids::derive(&instance_id, "event", seq),
        source,
        event_type: draft.event_type.as_str(),
        subject: &draft.subject,
        time: time.to_rfc3339_opts(SecondsFormat::Micros, true),
        datacontenttype: "application/json",
        dataschema,
        sequence: sequence(seq),
        channel: draft.channel.as_deref(),
        data: Numbered {
            data: &draft.data,
            ticket_number,
        },
    };
    // Sized for a typical event (the envelope and a message's data) so that serialising
    // does not grow the buffer again and again.
    let mut json = Vec::with_capacity(4096);
    serde_json::to_writer(&mut json, &event).expect("a JSON value and strings serialise");
    json
}

/// The `sequence` extension: `seq` zero-padded to 20 digits, which any u64 fits.
fn sequence(seq: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(seq);
    let mut padded = "0".repeat(20 - digits.len());
    padded.push_str(digits);
    padded
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// The envelope's ids, sequence and schema address are what the ticket store already
    /// holds for earlier events: they are built by hand now, and must come out as the
    /// `format!`-built ones did.
    #[test]
    fn an_envelope_names_its_event_as_every_earlier_version_did() {
        let instance = Uuid::from_u128(0x93ae_0916_4f7c_4578_8768_616c_de0d_c9da);
        let source = "urn:deskgate:93ae0916-4f7c-4578-8768-616cde0dc9da";
        let draft = EventDraft::new(
            "sink-a",
            None,
            data::EventData::SinkDisabled(data::SinkDisabled {
                sink: "sink-a".to_owned(),
                event_seq: 7,
                event_id: "e-7".to_owned(),
                reason: "answered 410 Gone".to_owned(),
            }),
        );
        let time = Utc.with_ymd_and_hms(2026, 12, 7, 9, 1, 44).unwrap();
        for seq in [0, 1, 42, 10_000_000_007, u64::MAX] {
            let json = render(source, instance, seq, time, &draft, None);
            let event: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let id = Uuid::new_v5(&instance, format!("event:{seq}").as_bytes()).to_string();
            assert_eq!(event["id"], id.as_str());
            assert_eq!(event["sequence"], format!("{seq:020}").as_str());
            assert_eq!(
                event["dataschema"],
                format!("{source}/v1/schemas/events/deskgate.sink.disabled.json").as_str()
            );
            assert_eq!(event["source"], source);
            assert_eq!(event["time"], "2026-12-07T09:01:44.000000Z");
        }
    }
}
