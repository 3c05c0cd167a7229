//! Plain types that flow through the pipeline: what a channel adapter hands to the journal.
//!
//! Nothing here imports another deskgate module, so every stage can depend on it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One way of recognising a person. The canonical (normalised) form is what is indexed;
/// display spellings live on the contact.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema, Deserialize,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identity {
    /// An email address, lower-cased.
    Email {
        /// The address, lower-cased, with an internationalised domain in ASCII form.
        address: String,
    },
    /// A phone number in E.164 form.
    Phone {
        /// The number in E.164 form (`+351912345678`).
        number: String,
    },
    /// An id that only means something inside one channel: an API caller's customer id, a chat
    /// visitor token, a Messenger page-scoped id.
    Channel {
        /// The channel the id means something in.
        channel: String,
        /// The id (`psid:<page>:<psid>`, `visitor:<token>`, a caller's customer id).
        id: String,
    },
}

impl Identity {
    /// The key this identity is indexed under. Channel ids are validated to contain no `:`,
    /// so the key spaces cannot collide.
    pub fn index_key(&self) -> String {
        match self {
            Identity::Email { address } => format!("email:{address}"),
            Identity::Phone { number } => format!("phone:{number}"),
            Identity::Channel { channel, id } => format!("channel:{channel}:{id}"),
        }
    }
}

/// Who sent a message, as far as the channel could tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct Sender {
    /// Display name as the sender gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every identity the message carries, strongest first.
    pub identities: Vec<Identity>,
    /// Email addresses as the sender wrote them, keyed by the normalised address, where the two
    /// differ (`Ana@Example.COM` for `ana@example.com`): kept for display, never compared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spellings: BTreeMap<String, String>,
}

/// A customer message, normalised by its channel adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// The configured channel id it arrived on.
    pub channel: String,
    /// The channel's idempotency key for this message; unique within the channel.
    pub external_id: String,
    /// The conversation key inside the channel (an API thread id, a chat visitor, an email
    /// thread root).
    pub thread_key: String,
    pub sender: Sender,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The message as plain text (converted from HTML when that is all there was).
    pub text: String,
    /// The HTML body, when the message had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// What kind of item this is; most are customer messages.
    #[serde(default)]
    pub kind: MessageKind,
    /// Facts about the message that decide how it is treated (automatic mail, bounces, forwards).
    #[serde(default)]
    pub flags: MessageFlags,
    /// Email headers that thread the message, for email channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailMeta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Channel-specific fields kept on the message as they came (form fields, a chat page URL,
    /// a quick-reply payload).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// When the sender says it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// When deskgate accepted it; every event derived from it carries this time, so a replay
    /// produces identical events.
    pub received_at: DateTime<Utc>,
    /// For platforms that limit how long after a customer's message the business may answer
    /// (Messenger, WhatsApp): the windows this message opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_window: Option<ReplyWindow>,
    /// Set by the channel when how the message arrived makes it history (mail that was already
    /// in a mailbox when deskgate first synced it): why. History opens tickets and contacts but
    /// sends no automatic mail and fires no trigger, as old mail does (`routing.history_age_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<String>,
    /// Other external ids on the channel that, already journaled, make this message their
    /// duplicate: a web form's key of the previous dedupe window, so that a double click across
    /// the window's edge is one submission. Only the journal writer reads them; not stored.
    #[serde(skip)]
    pub earlier_external_ids: Vec<String>,
}

/// How long after a customer's message the platform lets the business answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyWindow {
    /// The standard messaging window (24 hours on Messenger and WhatsApp).
    pub standard_secs: u64,
    /// Messenger's human-agent tag window (7 days), when the platform has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_agent_secs: Option<u64>,
}

impl Inbound {
    /// A plain customer message; set the other fields on the result as the channel knows them.
    pub fn new(
        channel: impl Into<String>,
        external_id: impl Into<String>,
        thread_key: impl Into<String>,
        sender: Sender,
        text: impl Into<String>,
        received_at: DateTime<Utc>,
    ) -> Inbound {
        Inbound {
            channel: channel.into(),
            external_id: external_id.into(),
            thread_key: thread_key.into(),
            sender,
            subject: None,
            text: text.into(),
            html: None,
            kind: MessageKind::Message,
            flags: MessageFlags::default(),
            email: None,
            attachments: Vec::new(),
            extra: serde_json::Map::new(),
            sent_at: None,
            received_at,
            reply_window: None,
            imported: None,
            earlier_external_ids: Vec::new(),
        }
    }
}

/// What kind of item a channel delivered.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Something the customer wrote.
    #[default]
    Message,
    /// The business's own outbound message, echoed back by the platform (Messenger `is_echo`,
    /// WhatsApp echoes): recorded on the conversation as outbound, never a customer message.
    Echo,
    /// A button press (Messenger postback, WhatsApp interactive reply).
    Postback,
    /// A reaction to an earlier message (or its removal).
    Reaction,
}

/// Facts about a message, set by the channel adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct MessageFlags {
    /// Machine-generated (RFC 3834 Auto-Submitted, Precedence bulk/list, auto-reply headers,
    /// mailer-daemon senders): never answered automatically, never a customer reply.
    #[serde(default)]
    pub automatic: bool,
    /// A delivery failure report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce: Option<Bounce>,
    /// Forwarded by someone else; `original_sender` is who wrote it first, when known.
    #[serde(default)]
    pub forwarded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_sender: Option<Sender>,
}

/// What a bounce says failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct Bounce {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The enhanced status code (`5.1.1`) when the report gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The Message-ID of the mail that bounced, from the returned headers, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// The headers that place an email in a thread. Ids are without angle brackets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct EmailMeta {
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_reply_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The mailbox and UID it was fetched from, for IMAP channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    /// The addresses of To and Cc, as written (lower-cased), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
}

/// An attachment: its metadata travels with the message; its content is stored by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct Attachment {
    /// Content id in deskgate's blob store, or the platform's media id/URL.
    pub id: String,
    /// The file name, when the sender gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its MIME type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

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

/// The channel name control records are deduplicated under; it cannot be a configured channel
/// id (those are `a-z0-9-_`), so the two key spaces never meet.
pub const CONTACT_CONTROL_CHANNEL: &str = "@control/contacts";

/// A control API request about contacts, journaled so that it is ordered with messages,
/// durable and applied exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactControl {
    /// The caller's `Idempotency-Key`, or a fresh UUID.
    pub key: String,
    pub command: ContactCommand,
    /// When deskgate accepted the request; events it causes carry this time.
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ContactCommand {
    /// Sets (or with `None` clears) the agent who owns the contact.
    SetOwner {
        contact_id: String,
        owner: Option<String>,
    },
    /// Merges `from` into `into` by hand, whatever the conflict guard would say.
    Merge { into: String, from: String },
    /// Erases the contact: identities, message bodies and attachments leave deskgate's state.
    Erase { contact_id: String },
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

/// The pseudo-channel outbound records are journaled under. Channel ids cannot contain `:`, so
/// it never collides with a configured channel.
pub const OUTBOUND_CHANNEL: &str = "outbound:";

/// A journaled outbound fact: a request to send, or what the sender did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outbound", rename_all = "snake_case")]
pub enum OutboundRecord {
    /// An agent's reply on a conversation, from the control API.
    Reply(ReplyRequest),
    /// An automatic mail (acknowledgement, notification), from the control API or routing.
    Automatic(AutomaticRequest),
    /// What the sender did with an outgoing item.
    Outcome(OutboundOutcome),
}

impl OutboundRecord {
    /// Requests dedupe on the caller's idempotency key; outcomes on item, attempt and result,
    /// so a sender that journals the same outcome twice records it once.
    pub fn dedupe_key(&self) -> DedupeKey {
        let (kind, id) = match self {
            OutboundRecord::Reply(r) => ("request", r.idempotency_key.clone()),
            OutboundRecord::Automatic(r) => ("request", r.idempotency_key.clone()),
            OutboundRecord::Outcome(o) => (
                "outcome",
                format!("{}:{}:{}", o.item_id, o.attempt, o.result.name()),
            ),
        };
        DedupeKey {
            channel: format!("{OUTBOUND_CHANNEL}{kind}"),
            external_id: id,
        }
    }
}

/// The agent sending a reply; names fill the signature's tokens.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    schemars::JsonSchema,
    Deserialize,
    utoipa::ToSchema,
)]
pub struct AgentRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRequest {
    pub idempotency_key: String,
    pub conversation_id: String,
    pub agent: AgentRef,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Blob ids of attachments already stored in deskgate's blob store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// When the request was accepted; messaging windows are measured to this time.
    pub requested_at: DateTime<Utc>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    schemars::JsonSchema,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AutomaticKind {
    /// An answer to the customer's mail (`Auto-Submitted: auto-replied`).
    Acknowledgement,
    /// A notice deskgate generates by itself, such as to agents (`Auto-Submitted: auto-generated`).
    Notification,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomaticRequest {
    pub idempotency_key: String,
    pub kind: AutomaticKind,
    /// The template name (`ticket_received`, `ticket_closed`, `internal_notification`, …).
    pub template: String,
    /// The conversation the mail is about; it names the mailbox and threads the mail.
    pub conversation_id: String,
    /// The recipient; by default the conversation's customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Extra values for the template (ticket fields).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub requested_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundOutcome {
    pub item_id: String,
    /// The attempt this outcome belongs to (1 for the first).
    pub attempt: u32,
    pub result: SendResult,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SendResult {
    /// About to hand the message to the provider: after this, a crash may leave it sent
    /// without a record of it.
    Attempting,
    /// The provider accepted it.
    Sent { provider_id: String },
    /// Given up: a permanent refusal, or transient failures for too long.
    Failed {
        error: String,
        /// The server said the recipient's mailbox does not exist (SMTP 5.1.x): a synchronous
        /// hard bounce, which suppresses the address for automatic mail.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recipient_unknown: bool,
    },
    /// Not sent: an automatic mail over the recipient's cap.
    Capped { reason: String },
}

impl SendResult {
    pub fn name(&self) -> &'static str {
        match self {
            SendResult::Attempting => "attempting",
            SendResult::Sent { .. } => "sent",
            SendResult::Failed { .. } => "failed",
            SendResult::Capped { .. } => "capped",
        }
    }
}

/// The pseudo-channel control records are deduplicated under; `:` cannot start a channel id.
pub const CONTROL_CHANNEL: &str = ":control";

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

/// A control API mutation as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// The caller's `Idempotency-Key`, or a fresh UUID.
    pub key: String,
    /// When the control API accepted it; events derived from it carry this time.
    pub at: DateTime<Utc>,
    pub command: ControlCommand,
}

/// Whether an agent can take work now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Available,
    Away,
    /// Until an agent's client reports otherwise.
    #[default]
    Offline,
}

/// Directory and ticket-state changes from the control API (applied by `routing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlCommand {
    PutUser {
        id: String,
        name: String,
        email: Option<String>,
        seat: bool,
        teams: Vec<String>,
    },
    PutTeam {
        id: String,
        label: String,
    },
    SetAvailability {
        user: String,
        availability: Availability,
    },
    SetTicketStatus {
        ticket: String,
        status: String,
    },
    SetTicketOwner {
        ticket: String,
        owner: Option<String>,
    },
    CloseConversation {
        conversation: String,
    },
    MergeTickets {
        survivor: String,
        merged: String,
    },
    /// Moves the conversation to a new ticket; with `messages`, only those messages (ids as
    /// the message events give them) and every mail replying to them, into a new conversation.
    SplitConversation {
        conversation: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        messages: Option<Vec<String>>,
    },
    DeleteTicket {
        ticket: String,
    },
    DeleteConversation {
        conversation: String,
    },
    MarkSpam {
        conversation: String,
    },
    /// Applies again a journal record the processor set aside (a webhook, form, chat or API
    /// input), after whatever made it fail was fixed.
    RetryQuarantined {
        seq: u64,
    },
    /// Moves a ticket to another pipeline (or status of its own), running the status's actions.
    MoveTicket {
        ticket: String,
        pipeline: String,
        status: String,
    },
    /// The conversation is not spam after all: it, its sender and the sender's other spam
    /// conversations are unmarked.
    UnmarkSpamConversation {
        conversation: String,
    },
    /// The contact is not a spammer: its flag and its conversations' spam marks go.
    UnmarkSpamContact {
        contact: String,
    },
    /// An agent's reply was sent from the ticket (recorded by the outbound work).
    AgentEmailed {
        ticket: String,
        conversation: Option<String>,
    },
    /// The config's moves (`[[routing.moves]]`), journaled at start or reload when stored
    /// tickets sit where one applies: each such ticket moves as with `MoveTicket`. The moves
    /// travel in the record so that a replay moves the same tickets whatever the config is.
    ApplyMoves {
        moves: Vec<PipelineMove>,
    },
}

/// Where the tickets of a removed pipeline (every status, when `from_status` is `None`) or of
/// a removed status go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineMove {
    pub from_pipeline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_status: Option<String>,
    pub to_pipeline: String,
    pub to_status: String,
}

impl PipelineMove {
    /// The move that takes a ticket in `pipeline` and `status`, if any: a move of its status
    /// wins over a move of its whole pipeline.
    pub fn find<'m>(
        moves: &'m [PipelineMove],
        pipeline: &str,
        status: Option<&str>,
    ) -> Option<&'m PipelineMove> {
        let of_status = moves.iter().find(|m| {
            m.from_pipeline == pipeline
                && m.from_status.is_some()
                && m.from_status.as_deref() == status
        });
        of_status.or_else(|| {
            moves
                .iter()
                .find(|m| m.from_pipeline == pipeline && m.from_status.is_none())
        })
    }
}
