//! The `data` of every event type, one Rust type each, and the one place they become JSON.
//!
//! Stages build these values, from the plain records of [`crate::model`] where an event shows
//! one (a contact, a ticket): `events` imports no stage. [`EventData::into_json`] renders them (through
//! `serde_json::Value`, whose objects keep their keys sorted, so the bytes in the outbox do not
//! depend on the order fields are declared in). The doc comment of each field is its meaning
//! for the ticket store: it is what the generated JSON Schema (`schemas/events/`, see
//! [`schema`]) says about the field, so it is part of the contract and stays stable.
//!
//! - `contact`: `deskgate.contact.*`.
//! - `message`: the message events (`deskgate.ticket.created`, `.message_added`,
//!   `deskgate.conversation.message_added`) and `deskgate.ticket.merge_suggested`.
//! - `ticket`: the other `deskgate.ticket.*` and `deskgate.conversation.*` events.
//! - `outbound`: `deskgate.outbound.*`.
//! - `notice`: events without a message: delivery statuses, channel notices, quarantine, sink
//!   dead letters and disablings.

mod contact;
mod message;
mod notice;
mod outbound;
pub mod schema;
mod ticket;

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};

use super::EventType;

pub use contact::{
    ContactCreated, ContactErased, ContactMergeSuggested, ContactMerged, ContactSpamUndone,
    ContactUpdated,
};
pub use message::{
    ConversationRef, Direction, IgnoredProperty, MessageAdded, MessageRef, MessageView,
    TicketFields, TicketMergeSuggested, TicketRouting, TicketView,
};
pub use notice::{ChannelNotice, InboundQuarantined, SinkDeadLettered, SinkDisabled};
pub use outbound::{
    AutomaticSuppressed, ChatConversation, OutboundChatMessage, OutboundItem, OutboundSuppressed,
    Via,
};
pub use ticket::{
    ActionFields, AssignmentRule, CloseReason, ConversationClosed, ConversationReopened,
    ConversationSpam, ConversationSpamUndone, Recipient, RecipientKind, ReopenReason, StatusCause,
    StatusTrigger, TicketActionRequested, TicketAssigned, TicketDeleted, TicketMerged, TicketSplit,
    TicketStatusChanged, TicketStatusTrigger,
};

/// A time as events write it: RFC 3339 in UTC with exactly six fractional digits
/// (`2026-11-23T13:29:20.378293Z`), so that every such time in an event has the same width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Micros(pub DateTime<Utc>);

impl Serialize for Micros {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl JsonSchema for Micros {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 in UTC with six fractional digits (2026-11-23T13:29:20.378293Z).",
        })
    }
}

/// What an event's data says of the number of the ticket it is about.
pub(in crate::events) enum TicketNumber {
    /// The data has its own `ticket_number` field.
    InData,
    /// The data shows the ticket, with this number (0: none).
    Known(u64),
    /// The data does not say: the outbox reads the ticket's mirror.
    LookUp,
}

/// Declares [`EventData`] from the list of event types and their data types, so that the
/// variant, the event type, the rendering and the schema of each type come from one line.
macro_rules! event_data {
    ($($variant:ident($data:ty),)*) => {
        /// An event's `data`, one variant per [`EventType`] (and named as it).
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventData {
            $($variant($data),)*
        }

        impl EventData {
            /// The event type this data is the `data` of.
            pub fn event_type(&self) -> EventType {
                match self {
                    $(EventData::$variant(_) => EventType::$variant,)*
                }
            }

            /// What the data says of its ticket's number, for the outbox's `ticket_number`.
            pub(in crate::events) fn ticket_number(&self) -> TicketNumber {
                match self {
                    EventData::TicketCreated(data)
                    | EventData::TicketMessageAdded(data)
                    | EventData::ConversationMessageAdded(data) => match &data.ticket {
                        Some(view) => TicketNumber::Known(view.ticket.number),
                        None => TicketNumber::LookUp,
                    },
                    EventData::TicketDeleted(_) => TicketNumber::InData,
                    _ => TicketNumber::LookUp,
                }
            }

            /// Event data as JSON (for tests and tools: the outbox serialises the typed data
            /// straight into the envelope).
            pub fn into_json(self) -> serde_json::Value {
                let value = match &self {
                    $(EventData::$variant(data) => serde_json::to_value(data),)*
                };
                // Every data type is plain structs of strings, numbers, maps with string keys
                // and `serde_json::Value`s, which always serialise.
                value.expect("event data serialises to JSON")
            }
        }

        /// Serialises as the variant's data, with nothing around it: the `data` of the event.
        impl serde::Serialize for EventData {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(EventData::$variant(data) => data.serialize(serializer),)*
                }
            }
        }

        impl EventType {
            /// Every event type, in the order of the list below. Generated with the data types,
            /// so a type cannot be missing here (the match in `schema_for_type` is exhaustive).
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];
        }

        /// The JSON Schema of an event type's `data`, generated from its Rust type.
        pub(crate) fn schema_for_type(event_type: EventType, generator: SchemaGenerator) -> Schema {
            match event_type {
                $(EventType::$variant => generator.into_root_schema_for::<$data>(),)*
            }
        }
    };
}

event_data! {
    ContactCreated(ContactCreated),
    ContactUpdated(ContactUpdated),
    ContactMerged(ContactMerged),
    ContactMergeSuggested(ContactMergeSuggested),
    ContactErased(ContactErased),
    TicketCreated(MessageAdded),
    TicketMessageAdded(MessageAdded),
    InboundQuarantined(InboundQuarantined),
    SinkDeadLettered(SinkDeadLettered),
    SinkDisabled(SinkDisabled),
    TicketAssigned(TicketAssigned),
    TicketStatusTrigger(TicketStatusTrigger),
    TicketStatusChanged(TicketStatusChanged),
    TicketActionRequested(TicketActionRequested),
    TicketMerged(TicketMerged),
    TicketMergeSuggested(TicketMergeSuggested),
    TicketSplit(TicketSplit),
    TicketDeleted(TicketDeleted),
    ConversationMessageAdded(MessageAdded),
    ConversationClosed(ConversationClosed),
    ConversationReopened(ConversationReopened),
    ConversationSpam(ConversationSpam),
    ConversationSpamUndone(ConversationSpamUndone),
    ContactSpamUndone(ContactSpamUndone),
    MessageDeliveryStatus(ChannelNotice),
    ChannelEvent(ChannelNotice),
    OutboundSent(OutboundItem),
    OutboundFailed(OutboundItem),
    OutboundSuppressed(OutboundSuppressed),
    OutboundChatMessage(OutboundChatMessage),
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::events::OutboxWriter;
    use crate::store::Store;

    /// The sinks' dead-letter step still writes its `data` with `json!` (it lives with the
    /// sinks, which change on their own schedule): it must say what the typed
    /// [`SinkDeadLettered`] says, or the schema would lie.
    #[test]
    fn the_dead_letter_step_writes_what_the_type_renders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let outbox = OutboxWriter::new("test".to_owned(), uuid::Uuid::nil());
        let dead = crate::model::SinkDeadLettered {
            sink: "crm".to_owned(),
            event_seq: 7,
            event_id: "e7".to_owned(),
            event_type: "deskgate.ticket.created".to_owned(),
            event_subject: "T1".to_owned(),
            attempts: 5,
            last_error: "503".to_owned(),
            generation: 1,
            at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        };
        let mut batch = store.state_batch();
        crate::events::notices::apply_dead_lettered(&outbox, &mut batch, &dead).unwrap();
        batch.commit().unwrap();
        let events = store.outbox_read(0, u64::MAX, 10).unwrap();
        let event: serde_json::Value = serde_json::from_slice(&events[0].1).unwrap();
        let typed = EventData::SinkDeadLettered((&dead).into());
        assert_eq!(event["type"], typed.event_type().as_str());
        assert_eq!(event["data"], typed.into_json());
    }

    /// Message times keep six fractional digits, as events always wrote them.
    #[test]
    fn micros_write_six_fractional_digits() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 13, 29, 20).unwrap();
        let json = serde_json::to_string(&Micros(at)).unwrap();
        assert_eq!(json, "\"2026-11-23T13:29:20.000000Z\"");
    }
}
