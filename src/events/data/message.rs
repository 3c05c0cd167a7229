//! The data of the message events (`deskgate.ticket.created`, `deskgate.ticket.message_added`,
//! `deskgate.conversation.message_added`) and of `deskgate.ticket.merge_suggested`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::Micros;
use crate::model::{Attachment, EmailMeta, MessageFlags, MessageKind, Sender, Ticket};

/// The data of a message event: `deskgate.ticket.created` (the message opened the ticket),
/// `deskgate.ticket.message_added` (a later message of the ticket) and
/// `deskgate.conversation.message_added` (a message on a channel that opens no tickets: no
/// `ticket`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MessageAdded {
    /// The ticket the message is on, with its routing fields; absent on channels that open no
    /// tickets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketView>,
    /// The conversation (thread) the message is on.
    pub conversation: ConversationRef,
    /// The message itself.
    pub message: MessageView,
}

/// A ticket as message events show it: the mirror's ticket and its routing fields.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketView {
    /// The ticket.
    #[serde(flatten)]
    pub ticket: TicketFields,
    /// Its pipeline, status, owner, priority and category after the message.
    #[serde(flatten)]
    pub routing: Option<TicketRouting>,
}

/// deskgate's mirror of a ticket; the ticket store owns the real one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(rename = "Ticket")]
pub struct TicketFields {
    /// The ticket's id (stable).
    pub id: String,
    /// The short number people name the ticket by (`#1042`): unique in this deskgate instance
    /// and never given twice. 0 for tickets opened before numbers existed.
    pub number: u64,
    /// The contact (customer) the ticket is for.
    pub contact_id: String,
    /// The channel of the message that opened it.
    pub channel: String,
    /// The subject of the message that opened it, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The ids of its conversations (threads), oldest first.
    pub conversations: Vec<String>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When a message or change last touched it.
    pub updated_at: DateTime<Utc>,
    /// Tickets a mail proved to be the same thread as this one, already suggested for a merge
    /// (`deskgate.ticket.merge_suggested`), so that the suggestion is made once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merge_suggested: Vec<String>,
    /// Contacts besides the ticket's own who take part: people its mail was copied to (Cc).
    /// A mail naming the ticket only by its subject tag is accepted from them too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
}

impl From<&Ticket> for TicketFields {
    fn from(ticket: &Ticket) -> Self {
        TicketFields {
            id: ticket.id.clone(),
            number: ticket.number,
            contact_id: ticket.contact_id.clone(),
            channel: ticket.channel.clone(),
            subject: ticket.subject.clone(),
            conversations: ticket.conversations.clone(),
            created_at: ticket.created_at,
            updated_at: ticket.updated_at,
            merge_suggested: ticket.merge_suggested.clone(),
            participants: ticket.participants.clone(),
        }
    }
}

/// A ticket's routing fields as message events show them.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketRouting {
    /// The ticket's pipeline; `null` when no pipeline is configured.
    pub pipeline: Option<String>,
    /// The ticket's status in its pipeline; `null` without a pipeline.
    pub status: Option<String>,
    /// The user the ticket is assigned to; `null` when unassigned.
    pub owner: Option<String>,
    /// The ticket's priority, when a form or default set one.
    pub priority: Option<String>,
    /// The ticket's category, when a form or default set one.
    pub category: Option<String>,
    /// Ticket properties the message asked for that the new ticket did not take, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredProperty>,
}

/// A ticket property a message (a web form) gave that names no pipeline or status of it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct IgnoredProperty {
    /// The property: `pipeline`, `status`, `priority` or `category`.
    pub field: String,
    /// The value given.
    pub value: String,
    /// Why the ticket did not take it.
    pub reason: String,
}

/// The conversation of a message event.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ConversationRef {
    /// The conversation's id.
    pub id: String,
    /// The channel it is on.
    pub channel: String,
    /// The thread's key inside the channel (an email thread root, a chat visitor, an API
    /// thread id, a phone number).
    pub thread_id: String,
    /// Until when the platform lets the business answer (Messenger, WhatsApp: 24 hours after
    /// the customer's last message); `null` on channels without such a window.
    pub reply_window_ends_at: Option<Micros>,
    /// Until when Messenger's human-agent tag lets an agent answer (7 days); `null` elsewhere.
    pub human_agent_window_ends_at: Option<Micros>,
}

/// Whether a message came from the customer or is the business's own, echoed by the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// The business's own message, echoed back by the platform (Messenger, WhatsApp).
    Outbound,
}

/// A message as events show it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MessageView {
    /// The message's id in deskgate (stable: derived from its journal position).
    pub id: String,
    /// Its position in deskgate's journal.
    pub journal_seq: u64,
    /// From the customer, or the business's own echoed message.
    pub direction: Direction,
    /// The channel it arrived on.
    pub channel: String,
    /// The channel's idempotency key for it (Message-ID, `mid`, `wamid`, the caller's id).
    pub external_id: String,
    /// Who sent it, as far as the channel could tell.
    pub from: Sender,
    /// What kind of item it is.
    pub kind: MessageKind,
    /// The subject, `null` when the channel has none.
    pub subject: Option<String>,
    /// The message as plain text (converted from HTML when that is all there was).
    pub text: String,
    /// The HTML body; absent when the message had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Facts that decide how it is treated (automatic mail, bounces, forwards).
    pub flags: MessageFlags,
    /// The email headers that thread it; `null` on other channels.
    pub email: Option<EmailMeta>,
    /// Its attachments' metadata.
    pub attachments: Vec<Attachment>,
    /// Channel-specific fields as they came (form fields, a chat page URL, ticket properties).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// When the sender says it was sent; `null` when the channel does not say.
    pub sent_at: Option<Micros>,
    /// When deskgate accepted it.
    pub received_at: Micros,
    /// The sender is flagged as spam (present only then, as `true`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub spam: bool,
    /// The message is history (an import, a mailbox's first sync, older than
    /// `routing.history_age_secs`): it fired no trigger and no automatic mail (present only
    /// then, as `true`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    /// Why the message is history (present with `imported`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported_reason: Option<String>,
}

/// `deskgate.ticket.merge_suggested`: a mail referred to mails of several tickets, which
/// makes them one thread; it went to `ticket` (the older), and the store or an agent decides.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketMergeSuggested {
    /// The ticket the mail went to.
    pub ticket: TicketFields,
    /// The ids of the other tickets it referred to.
    pub candidates: Vec<String>,
    /// The id of the conversation the mail went to.
    pub conversation: String,
    /// The mail.
    pub message: MessageRef,
    /// Why a merge is suggested, for people.
    pub reason: String,
}

impl TicketMergeSuggested {
    /// The reason given for a mail that refers to several tickets.
    pub const ONE_THREAD: &'static str =
        "the mail refers to messages of each of these tickets: they are one thread";
}

/// A message named by its ids.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MessageRef {
    /// The message's id in deskgate.
    pub id: String,
    /// The channel's idempotency key for it (for mail, its Message-ID).
    pub external_id: String,
}
