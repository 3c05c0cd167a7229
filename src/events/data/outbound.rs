//! The data of `deskgate.outbound.*` events: what became of what deskgate sends.

use schemars::JsonSchema;
use serde::Serialize;

use super::StatusTrigger;
use crate::model::{AgentRef, Attachment, AutomaticKind, Purpose};

/// How an outgoing message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A mail (SMTP or the Graph API).
    Email,
    /// A Messenger message through the Graph API.
    Messenger,
    /// A WhatsApp message through the Cloud API.
    Whatsapp,
}

/// `deskgate.outbound.sent` (the provider accepted it), `deskgate.outbound.failed` (given up),
/// and `deskgate.outbound.suppressed` for a queued item over its recipient's cap: what became
/// of one outgoing message.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct OutboundItem {
    /// The outgoing item's id.
    pub item_id: String,
    /// The conversation it answers.
    pub conversation_id: String,
    /// That conversation's ticket.
    pub ticket_id: String,
    /// How it travels.
    pub via: Via,
    /// Why it was sent.
    pub purpose: Purpose,
    /// The agent whose reply it is; `null` for automatic mail.
    pub agent_id: Option<String>,
    /// The address, PSID or phone number it goes to.
    pub recipient: String,
    /// The mail's Message-ID; `null` for other ways.
    pub message_id: Option<String>,
    /// How many attempts were made.
    pub attempts: u32,
    /// The journal record that asked for it.
    pub requested_journal_seq: u64,
    /// `sent`: the provider's id for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// `failed`: why it was given up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `suppressed`: why it was not sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `agent_emailed` when an agent's reply went out: the same step fires that trigger on the
    /// ticket (a `deskgate.ticket.status_trigger` follows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_trigger: Option<StatusTrigger>,
}

/// `deskgate.outbound.suppressed`: an outgoing message that was not sent. Either an item that
/// was queued (and capped), or an automatic mail refused before it was queued.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OutboundSuppressed {
    /// A queued item not sent.
    Item(OutboundItem),
    /// An automatic mail refused before it was queued.
    Automatic(AutomaticSuppressed),
}

/// An automatic mail deskgate decided not to send (automatic sender, machine address,
/// suppressed address, cap, or a channel no mailbox answers).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct AutomaticSuppressed {
    /// The conversation it would have answered.
    pub conversation_id: String,
    /// That conversation's ticket.
    pub ticket_id: String,
    /// An acknowledgement or a notification.
    pub kind: AutomaticKind,
    /// The template it would have used.
    pub template: String,
    /// Whom it would have gone to; `null` when the request named nobody (the customer).
    pub recipient: Option<String>,
    /// Why it was not sent.
    pub reason: String,
    /// The journal record that asked for it, for a mail promised by a status-reached action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_journal_seq: Option<u64>,
}

/// `deskgate.outbound.chat_message`: an agent's reply on a chat channel, for the widget's
/// backend to show (deskgate holds no visitor socket).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct OutboundChatMessage {
    /// The reply's id.
    pub message_id: String,
    /// The chat conversation.
    pub conversation: ChatConversation,
    /// The conversation's ticket.
    pub ticket_id: String,
    /// The agent replying.
    pub agent: AgentRef,
    /// The reply as text.
    pub text: String,
    /// The reply as HTML; `null` when there is none.
    pub html: Option<String>,
    /// Its attachments (blob ids in deskgate's blob store).
    pub attachments: Vec<Attachment>,
}

/// The chat conversation a reply goes to.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ChatConversation {
    /// The conversation's id.
    pub id: String,
    /// The visitor's thread key.
    pub thread_id: String,
}
