//! What a customer message is once its channel adapter normalised it: the person's identities
//! as the channel reported them, the message, its email threading headers and attachments.

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
    /// The sender's locale, when their channel tells it (Messenger's profile `fr_FR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
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
