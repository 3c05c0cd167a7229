//! The data of ticket and conversation events other than the message events.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::config::{ActionKind, RuleKind};
use crate::model::Routing;

/// What decided an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentRule {
    /// The channel's rule `nobody` (never emitted: such channels route nothing).
    Nobody,
    /// The channel's rule `users_and_teams`: its users and teams, by availability and round robin.
    UsersAndTeams,
    /// The channel's rule `contact_owner`: the contact's owner first.
    ContactOwner,
    /// The owner was set through the control API.
    Control,
}

impl From<RuleKind> for AssignmentRule {
    fn from(rule: RuleKind) -> Self {
        match rule {
            RuleKind::Nobody => AssignmentRule::Nobody,
            RuleKind::UsersAndTeams => AssignmentRule::UsersAndTeams,
            RuleKind::ContactOwner => AssignmentRule::ContactOwner,
        }
    }
}

/// `deskgate.ticket.assigned`: routing (or the control API) picked the ticket's assignee.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketAssigned {
    /// The ticket's id.
    pub ticket: String,
    /// The user it is assigned to; `null` when nobody could take it.
    pub assignee: Option<String>,
    /// What decided.
    pub rule: AssignmentRule,
    /// A short account of why, for people (`owner alice is away; round robin picked bob`).
    pub trace: String,
}

/// `deskgate.ticket.status_trigger`: a status trigger (`customer_replied`, `agent_emailed`)
/// moved the ticket.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketStatusTrigger {
    /// The ticket's id.
    pub ticket: String,
    /// The trigger that fired.
    pub trigger: StatusTrigger,
    /// The status before; `null` when it had none.
    pub old_status: Option<String>,
    /// The status now.
    pub new_status: String,
    /// The ticket's pipeline; `null` when it has none.
    pub pipeline: Option<String>,
}

/// A status trigger: what moves a ticket by itself, per pipeline (`[routing.pipelines.*.triggers]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusTrigger {
    /// The customer wrote (a message, not automatic mail, a bounce or a reaction).
    CustomerReplied,
    /// An agent's reply went out (by mail, Messenger or WhatsApp).
    AgentEmailed,
}

impl StatusTrigger {
    /// The name in config, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusTrigger::CustomerReplied => "customer_replied",
            StatusTrigger::AgentEmailed => "agent_emailed",
        }
    }
}

/// Why a status was set from outside the triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusCause {
    /// The ticket store set it through the control API.
    Control,
    /// The config's `[[routing.moves]]` moved the ticket out of a removed pipeline or status.
    ConfigMove,
}

/// `deskgate.ticket.status_changed`: the ticket store or the config's moves set the status.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketStatusChanged {
    /// The ticket's id.
    pub ticket: String,
    /// Who set it.
    pub cause: StatusCause,
    /// The status before; `null` when it had none.
    pub old_status: Option<String>,
    /// The status now.
    pub new_status: String,
    /// The ticket's pipeline; `null` when it has none.
    pub pipeline: Option<String>,
    /// The pipeline before, when this change moved the ticket between pipelines (the control
    /// API's pipeline move, or `[[routing.moves]]`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_pipeline: Option<String>,
}

/// `deskgate.ticket.action_requested`: entering a status decided a configured action (an
/// acknowledgement or a notification mail); a `deskgate.outbound.*` event says what became of
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketActionRequested {
    /// The ticket's id.
    pub ticket: String,
    /// The status whose entry decided the action.
    pub status: String,
    /// The action.
    pub action: ActionKind,
    /// The mail template it uses.
    pub template: String,
    /// Who it goes to, in order.
    pub recipients: Vec<Recipient>,
    /// The ticket's fields given to the template.
    pub fields: ActionFields,
}

/// Who an action's mail goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Recipient {
    /// A contact (the customer) or a user of the directory.
    pub kind: RecipientKind,
    /// The contact's or user's id.
    pub id: String,
    /// The address the mail goes to.
    pub email: String,
}

/// Whom a recipient is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    /// The ticket's contact.
    Contact,
    /// A user of the directory (named, a team's member, or the owner).
    User,
}

/// The ticket's fields as a status-reached action's template sees them.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ActionFields {
    /// The ticket's subject; `null` when it has none.
    pub subject: Option<String>,
    /// The ticket's contact.
    pub contact_id: String,
    /// The ticket's pipeline; `null` when it has none.
    pub pipeline: Option<String>,
    /// The ticket's status; `null` when it has none.
    pub status: Option<String>,
    /// The ticket's owner; `null` when unassigned.
    pub owner: Option<String>,
    /// The ticket's priority; `null` when unset.
    pub priority: Option<String>,
    /// The ticket's category; `null` when unset.
    pub category: Option<String>,
}

/// `deskgate.ticket.merged`: the control API merged a ticket into another.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketMerged {
    /// The id of the ticket that remains.
    pub ticket: String,
    /// The id of the ticket merged into it, which is gone.
    pub merged: String,
    /// The remaining ticket's conversations, the merged one's included.
    pub conversations: Vec<String>,
}

/// `deskgate.ticket.split`: a conversation, or chosen mails of one, moved to a new ticket.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketSplit {
    /// The id of the ticket split from.
    pub ticket: String,
    /// The id of the new ticket.
    pub new_ticket: String,
    /// The new ticket's number.
    pub new_ticket_number: u64,
    /// The conversation on the new ticket: the one moved, or the new one the chosen mails
    /// moved to.
    pub conversation: String,
    /// For a split by message: the conversation the mails left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_conversation: Option<String>,
    /// For a split by message: the ids of every message that moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<String>>,
    /// The new ticket's routing state.
    pub routing: Routing,
}

/// `deskgate.ticket.deleted`: the ticket was deleted through the control API, or all of its
/// conversations were marked as spam.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TicketDeleted {
    /// The ticket's id.
    pub ticket: String,
    /// The ticket's number (0 for tickets from before numbers).
    pub ticket_number: u64,
    /// Its conversations, which went with it.
    pub conversations: Vec<String>,
}

/// Why a conversation closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Its ticket entered a closed status.
    TicketClosed,
    /// The control API closed it.
    Control,
}

/// `deskgate.conversation.closed`: a conversation closed; a later message on its thread
/// follows the pipeline's rule for replies on closed tickets.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ConversationClosed {
    /// The id of its ticket.
    pub ticket: String,
    /// The conversation's id.
    pub conversation: String,
    /// Why it closed.
    pub reason: CloseReason,
}

/// Why a conversation reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReopenReason {
    /// Its ticket entered an open status again (the control API or a status trigger); only a
    /// ticket's only conversation reopens with it.
    TicketReopened,
    /// The customer wrote on it (a message, not automatic mail, a bounce, a forward or a
    /// reaction, on a conversation that did not start with a forward).
    CustomerReplied,
    /// The customer wrote on it while its ticket was closed, and the pipeline's
    /// `closed_reply = "new_ticket"` moved it to a new ticket (`ticket`).
    NewTicket,
}

/// `deskgate.conversation.reopened`: a closed conversation is open again; it follows the
/// events that reopened it (the message, or the status change).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ConversationReopened {
    /// The id of its ticket.
    pub ticket: String,
    /// The conversation's id.
    pub conversation: String,
    /// Why it reopened.
    pub reason: ReopenReason,
}

/// `deskgate.conversation.spam`: a conversation was marked as spam and its sender flagged.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ConversationSpam {
    /// The id of its ticket.
    pub ticket: String,
    /// The conversation's id.
    pub conversation: String,
    /// The flagged sender's contact id.
    pub contact: String,
    /// When deskgate forgets the conversation.
    pub purge_after: DateTime<Utc>,
}

/// `deskgate.conversation.spam_undone`: a conversation's spam mark was lifted.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ConversationSpamUndone {
    /// The id of its ticket.
    pub ticket: String,
    /// The conversation's id.
    pub conversation: String,
    /// Its contact's id.
    pub contact: String,
}
