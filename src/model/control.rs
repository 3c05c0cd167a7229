//! Control API requests as journaled: directory and ticket-state changes, and changes to
//! contacts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// The pseudo-channel control records are deduplicated under; `:` cannot start a channel id.
pub const CONTROL_CHANNEL: &str = ":control";
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

/// Directory and ticket-state changes from the control API (applied by `tickets`).
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
