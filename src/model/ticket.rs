//! The ticket record: deskgate's mirror of one ticket of the ticket store, one record under
//! `ticket/{id}`: what it is (contact, channel, conversations, number) and where it stands
//! (pipeline, status, owner and what the status triggers need). A plain type here because
//! several stages read or write it: threading opens and touches tickets, `tickets` routes and
//! changes them, contacts' merges move them, events show them, outbound tags mail with their
//! number.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A ticket as deskgate mirrors it; the ticket store owns the real one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The ticket's id (stable).
    pub id: String,
    /// The short number people name the ticket by (`#1042`): unique in this deskgate instance
    /// and never given twice. 0 for tickets opened before numbers existed.
    #[serde(default)]
    pub number: u64,
    /// The contact (customer) the ticket is for.
    pub contact_id: String,
    /// The channel of the message that opened it.
    pub channel: String,
    /// The subject of the message that opened it, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The ids of its conversations (threads), oldest first.
    pub conversations: Vec<String>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When a message or change last touched it.
    pub updated_at: DateTime<Utc>,
    /// Tickets a mail proved to be the same thread as this one, already suggested for a merge
    /// (`deskgate.ticket.merge_suggested`), so that the suggestion is made once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_suggested: Vec<String>,
    /// Contacts besides the ticket's own who take part: people its mail was copied to (Cc).
    /// A mail naming the ticket only by its subject tag is accepted from them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
    /// Where it stands: pipeline, status, owner, and what the status triggers need.
    #[serde(default)]
    pub routing: Routing,
    /// When it closed, while it is closed: its entry in the index of closed tickets
    /// (`closed/{seconds}{id}`) is filed under this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

/// A ticket's pipeline, status and owner, and the bookkeeping its status triggers need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct Routing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Whether the status is an open one (a ticket without a pipeline is open).
    pub open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Conversations whose customer replies fire `customer_replied`: the one the ticket was
    /// created from, and new threads joined after a close and reopen.
    #[serde(default)]
    pub trigger_conversations: Vec<String>,
    /// The ticket was closed and reopened, so new threads on it count for the trigger.
    #[serde(default)]
    pub reopened: bool,
    /// Messages on this channel do not open tickets: the store sees conversation events only.
    #[serde(default)]
    pub ticketless: bool,
    #[serde(default)]
    pub chat: bool,
}

/// A ticket nothing has routed yet is open, in no pipeline, with no owner.
impl Default for Routing {
    fn default() -> Self {
        Routing {
            pipeline: None,
            status: None,
            open: true,
            owner: None,
            priority: None,
            category: None,
            trigger_conversations: Vec::new(),
            reopened: false,
            ticketless: false,
            chat: false,
        }
    }
}
