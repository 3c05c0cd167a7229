//! The journal's record: every input the processor must apply, in order, and its
//! deduplication key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;

/// What the journal records: every input the processor must apply, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Inbound(Box<Inbound>),
    /// Input a channel could not turn into a message (unparseable, over a size limit, a parser
    /// panic). Journaled like a message, so that it is acknowledged, listed and retryable.
    Quarantine(QuarantinedInput),
    /// Something to send, or what became of a send (see `outbound`).
    Outbound(Box<OutboundRecord>),
    /// A change asked for through the control API (directory, ticket state), journaled so that
    /// it is ordered with messages and replays deterministically.
    Control(Box<ControlRecord>),
    /// Something a channel delivered that is not a message: a delivery or read receipt, a
    /// deleted message, a template or account notice, a call event.
    Event(Box<ChannelEvent>),
    /// A change to contacts asked for through the control API (owner, merge, erasure).
    Contact(ContactControl),
    /// A sink gave up on an event and set it aside; journaled by the sink task so that the
    /// `deskgate.sink.dead_lettered` event is sequenced like every other.
    SinkDeadLettered(SinkDeadLettered),
    /// A webhook endpoint answered 410 Gone and its sink stopped; journaled by the sink task so
    /// that the `deskgate.sink.disabled` event is sequenced like every other.
    SinkDisabled(SinkDisabled),
}

impl Record {
    /// Decodes a record from its JSON. A message, the journal's commonest record, is read
    /// straight into its struct: serde reads an internally tagged enum by buffering the whole
    /// object into a tree of its own first, which cost the processor a tenth of its time.
    /// deskgate writes the tag first, so the prefix tells; the struct ignores the tag field.
    /// Anything else (another variant, a tag not first) takes serde's way.
    pub fn from_json(json: &[u8]) -> serde_json::Result<Record> {
        if json.starts_with(br#"{"record":"inbound","#) {
            if let Ok(inbound) = serde_json::from_slice::<Inbound>(json) {
                return Ok(Record::Inbound(Box::new(inbound)));
            }
        }
        serde_json::from_slice(json)
    }

    /// When deskgate accepted it (or, for a sender's outcome, when the send ended): journal
    /// retention counts from it.
    pub fn accepted_at(&self) -> DateTime<Utc> {
        match self {
            Record::Inbound(inbound) => inbound.received_at,
            Record::Quarantine(input) => input.received_at,
            Record::Outbound(outbound) => match outbound.as_ref() {
                OutboundRecord::Reply(request) => request.requested_at,
                OutboundRecord::Automatic(request) => request.requested_at,
                OutboundRecord::Outcome(outcome) => outcome.at,
            },
            Record::Control(control) => control.at,
            Record::Event(event) => event.received_at,
            Record::Contact(control) => control.received_at,
            Record::SinkDeadLettered(dead) => dead.at,
            Record::SinkDisabled(disabled) => disabled.at,
        }
    }
}

/// A non-message item from a channel, kept so that it is acknowledged once and visible
/// downstream, without opening tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelEvent {
    pub channel: String,
    /// The idempotency key within the channel (a WhatsApp status: `wamid:status`).
    pub external_id: String,
    pub kind: ChannelEventKind,
    /// What the platform called it (`message_deliveries`, `statuses`, `account_update`, ...).
    pub name: String,
    /// The conversation it concerns, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_key: Option<String>,
    /// The customer it concerns, when the platform says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
    /// For delivery statuses: `sent`, `delivered`, `read`, `played`, `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The platform's ids of the messages it is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_ids: Vec<String>,
    /// The item as received, for what has no field of its own (errors, pricing, watermarks).
    #[serde(default)]
    pub detail: serde_json::Value,
    /// When the platform says it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// What a non-message item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelEventKind {
    /// Sent, delivered, read, played or failed, for messages the business sent.
    DeliveryStatus,
    /// Anything else the platform reports; accepted and recorded as such.
    Other,
}

/// Input set aside at the channel, with why and where its raw bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedInput {
    pub channel: String,
    /// The idempotency key the input would have had (a content hash when nothing better).
    pub external_id: String,
    pub reason: String,
    /// The blob holding the raw bytes as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_blob: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl Record {
    /// The blobs the record names: a message's or a reply's attachments, quarantined input's
    /// raw bytes. (Attachments of other platforms are media ids, not blobs; naming them here
    /// only keeps nothing.)
    pub fn blob_ids(&self) -> Vec<&str> {
        fn attachments(list: &[Attachment]) -> Vec<&str> {
            list.iter().map(|a| a.id.as_str()).collect()
        }
        match self {
            Record::Inbound(inbound) => attachments(&inbound.attachments),
            Record::Quarantine(input) => input.raw_blob.as_deref().into_iter().collect(),
            Record::Outbound(outbound) => match outbound.as_ref() {
                OutboundRecord::Reply(request) => attachments(&request.attachments),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// The channel the record belongs to, for logs and quarantine listings.
    pub fn channel(&self) -> &str {
        match self {
            Record::Inbound(inbound) => &inbound.channel,
            Record::Quarantine(input) => &input.channel,
            Record::Control(_) => CONTROL_CHANNEL,
            Record::Event(event) => &event.channel,
            Record::Outbound(_) => OUTBOUND_CHANNEL,
            Record::Contact(_) => CONTACT_CONTROL_CHANNEL,
            Record::SinkDeadLettered(dead) => &dead.sink,
            Record::SinkDisabled(disabled) => &disabled.sink,
        }
    }
}

/// The deduplication key of a journal record: a channel and the channel's own id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupeKey {
    pub channel: String,
    pub external_id: String,
}

impl DedupeKey {
    /// Keys that, when already journaled, make `record` a duplicate of theirs besides its own
    /// ([`Inbound::earlier_external_ids`]).
    pub fn earlier(record: &Record) -> Vec<DedupeKey> {
        match record {
            Record::Inbound(inbound) => inbound
                .earlier_external_ids
                .iter()
                .map(|id| DedupeKey {
                    channel: inbound.channel.clone(),
                    external_id: id.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn of(record: &Record) -> DedupeKey {
        match record {
            Record::Inbound(inbound) => DedupeKey {
                channel: inbound.channel.clone(),
                external_id: inbound.external_id.clone(),
            },
            Record::Quarantine(input) => DedupeKey {
                channel: input.channel.clone(),
                external_id: input.external_id.clone(),
            },
            Record::Control(control) => DedupeKey {
                channel: CONTROL_CHANNEL.to_owned(),
                external_id: control.key.clone(),
            },
            Record::Event(event) => DedupeKey {
                channel: event.channel.clone(),
                external_id: event.external_id.clone(),
            },
            Record::Outbound(record) => record.dedupe_key(),
            Record::Contact(control) => DedupeKey {
                channel: CONTACT_CONTROL_CHANNEL.to_owned(),
                external_id: control.key.clone(),
            },
            Record::SinkDeadLettered(dead) => dead.dedupe_key(),
            Record::SinkDisabled(disabled) => disabled.dedupe_key(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Record {
        let sender = Sender {
            name: Some("Ana \"the\" Customer".into()),
            identities: vec![crate::identity::email("ana@example.com").unwrap()],
            ..Sender::default()
        };
        let at = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap();
        let mut inbound = Inbound::new("api", "m-1", "t-1", sender, "Help\n", at.into());
        inbound.subject = Some("Printer on fire".into());
        inbound.sent_at = Some(at.into());
        inbound
            .extra
            .insert("quarantine_retry_of".into(), serde_json::json!(7));
        Record::Inbound(Box::new(inbound))
    }

    #[test]
    fn a_message_read_straight_into_its_struct_is_what_serde_reads() {
        let record = message();
        let json = serde_json::to_vec(&record).unwrap();
        assert!(
            json.starts_with(br#"{"record":"inbound","#),
            "the tag is written first"
        );
        let through_serde: Record = serde_json::from_slice(&json).unwrap();
        assert_eq!(Record::from_json(&json).unwrap(), through_serde);
        assert_eq!(through_serde, record);
    }

    #[test]
    fn records_the_shortcut_does_not_know_still_decode() {
        // The tag elsewhere than first (written by hand, or by another serialiser).
        let mut value = serde_json::to_value(message()).unwrap();
        let tag = value.as_object_mut().unwrap().remove("record").unwrap();
        value.as_object_mut().unwrap().insert("record".into(), tag);
        let json = serde_json::to_vec(&value).unwrap();
        assert!(!json.starts_with(br#"{"record""#));
        assert_eq!(Record::from_json(&json).unwrap(), message());
        // Another variant.
        let quarantined = Record::Quarantine(QuarantinedInput {
            channel: "api".into(),
            external_id: "sha256:1".into(),
            reason: "not JSON".into(),
            raw_blob: None,
            received_at: DateTime::UNIX_EPOCH,
        });
        let json = serde_json::to_vec(&quarantined).unwrap();
        assert_eq!(Record::from_json(&json).unwrap(), quarantined);
        // A damaged message is an error, not a default.
        assert!(Record::from_json(br#"{"record":"inbound","channel":1}"#).is_err());
    }
}
