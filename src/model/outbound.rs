//! Journaled outbound facts: requests to send (agents' replies, automatic mails) and what the
//! sender did with them; and why an item is sent ([`Purpose`]), which the outbound events
//! show.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Attachment, DedupeKey};

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

/// Why an item is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    AgentReply,
    Acknowledgement,
    Notification,
    InstantReply,
    // A customer's mail forwarded to one of its mailbox's members (`forward_to`); a plain
    // comment, as a doc comment would turn the event schemas' simple enum into a `oneOf`.
    Forward,
    // A Messenger page's GDPR consent text (`outbound.messenger.<channel>.consent`), with the
    // agree button in explicit mode.
    Consent,
    // A chat conversation's transcript, mailed to the visitor when it closes
    // (`channels.<id>.chat.transcript`).
    Transcript,
}

impl Purpose {
    pub fn is_automatic(self) -> bool {
        !matches!(self, Purpose::AgentReply)
    }

    /// Counts against `auto_mail_per_recipient_per_hour`. Forwards go to the desk's own
    /// members, one per customer mail: a busy mailbox must not cap them, and loops are cut
    /// where they start (automatic mail and the members' own mail are never forwarded).
    pub fn is_capped(self) -> bool {
        self.is_automatic() && self != Purpose::Forward
    }
}
