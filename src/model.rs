//! Plain types that flow through the pipeline: what a channel adapter hands to the journal.
//!
//! Nothing here imports another deskgate module, so every stage can depend on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One way of recognising a person. The canonical (normalised) form is what is indexed;
/// display spellings live on the contact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identity {
    /// An email address, lower-cased.
    Email { address: String },
    /// A phone number in E.164 form.
    Phone { number: String },
    /// An id that only means something inside one channel: an API caller's customer id, a chat
    /// visitor token, a Messenger page-scoped id.
    Channel { channel: String, id: String },
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// Display name as the sender gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every identity the message carries, strongest first.
    pub identities: Vec<Identity>,
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
    pub text: String,
    /// When the sender says it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// When deskgate accepted it; every event derived from it carries this time, so a replay
    /// produces identical events.
    pub received_at: DateTime<Utc>,
}

/// What the journal records: every input the processor must apply, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Inbound(Inbound),
}

impl Record {
    /// The channel the record belongs to, for logs and quarantine listings.
    pub fn channel(&self) -> &str {
        match self {
            Record::Inbound(inbound) => &inbound.channel,
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
    pub fn of(record: &Record) -> DedupeKey {
        match record {
            Record::Inbound(inbound) => DedupeKey {
                channel: inbound.channel.clone(),
                external_id: inbound.external_id.clone(),
            },
        }
    }
}
