//! Tickets as deskgate mirrors them: what each is (contact, channel, conversations, number)
//! and where it stands (pipeline, status, owner and the bookkeeping that status triggers need),
//! one record per ticket, changed in journal order.
//!
//! - `fold`: folding the older two-record layout into the one ticket record
//!   ([`crate::model::Ticket`]: a plain type, as the other stages read it too).
//! - `messages`: the processor's step after threading (new tickets get their pipeline, status
//!   and owner from [`crate::routing::decide`]; replies fire `customer_replied`; a reply on a
//!   closed ticket reopens it or opens a new one; spam senders are flagged).
//! - `control`: control API mutations (directory, ticket status and owner, close, merge,
//!   delete, spam), journaled as [`crate::model::Record::Control`].
//! - `split`: splitting a whole conversation, or chosen mails of one, onto a new ticket.
//! - `ops`: status changes and what follows them (conversations closed or reopened, open-ticket
//!   counts, status-reached actions), assignment, moving a conversation to a new ticket.
//! - `state`: the directory, open-ticket counts, rotations, the closed-ticket index and the
//!   conversation bookkeeping, kept under `routing/…`.
//! - `replies`: an agent's reply that went out fires `agent_emailed`.
//! - `spam`: marking and unmarking spam; a ticket all of whose conversations are spam goes.
//! - `usage`: the pipelines and statuses stored tickets are in, which a config may not remove
//!   unless its `[[routing.moves]]` say where those tickets go.
//! - `forget`: closed tickets past `routing.closed_retention_secs` leave the state.

mod control;
mod defaults;
mod fold;
mod forget;
mod messages;
mod ops;
mod replies;
mod spam;
mod split;
mod state;
mod usage;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::ActionKind;
use crate::events::data::EventData;
use crate::events::{EventDraft, OutboxWriter};
use crate::ids::Minter;
use crate::routing::{DirectoryState, RuleSet};
use crate::store::StateBatch;

pub use control::apply_control;
pub use forget::forget_closed;
pub use messages::{after_threading, is_customer_reply, Routed};
pub use replies::{agent_replied, ReplyEffect};
pub use usage::{moves_due, moves_of, pipeline_usage, stranded, Usage};

pub use fold::fold_routing_records;
pub use state::{directory_snapshot, directory_view, ticket_view, ConversationState};

/// One record's routing work: the batch, the rules, and the events and actions it produces
/// in order.
pub(crate) struct Step<'s, 'b> {
    pub batch: &'s mut StateBatch<'b>,
    pub rules: &'s RuleSet,
    pub minter: &'s Minter,
    pub at: DateTime<Utc>,
    /// The conversation the record is about (a message's); actions go out on it. `None` for
    /// control commands, whose actions go out on the ticket's latest conversation.
    pub conversation: Option<String>,
    pub events: Vec<EventDraft>,
    pub actions: Vec<RequestedAction>,
    /// Conversations this step closed, in order.
    pub closed: Vec<String>,
}

/// What a step leaves for outbound to carry out in the same step, so that it happens exactly
/// once: status-reached actions, and the transcripts of the chat conversations it closed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Followups {
    pub actions: Vec<RequestedAction>,
    /// Conversations closed, in order (`outbound::transcript` mails chat transcripts).
    pub closed: Vec<String>,
}

/// A status-reached action (`[[routing.pipelines.<id>.actions]]`) that a step decided on, for
/// the processor to hand to outbound in the same step. The same decision is announced as
/// `deskgate.ticket.action_requested`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedAction {
    pub action: ActionKind,
    pub template: String,
    pub ticket_id: String,
    /// The ticket's channel, for the event that says what became of the action.
    pub channel: String,
    /// Where the mail threads and which mailbox sends it.
    pub conversation_id: String,
    /// Email addresses, in the order the action names them (the customer's first, for an
    /// acknowledgement).
    pub recipients: Vec<String>,
    /// The ticket's fields for the template.
    pub fields: serde_json::Map<String, Value>,
}

impl Step<'_, '_> {
    /// Takes what the step leaves for outbound.
    fn followups(&mut self) -> Followups {
        Followups {
            actions: std::mem::take(&mut self.actions),
            closed: std::mem::take(&mut self.closed),
        }
    }

    fn emit(&mut self, subject: &str, channel: Option<&str>, data: EventData) {
        self.events.push(EventDraft::new(subject, channel, data));
    }
}

/// Whether `id` is a user of the directory now (config overlaid with control API changes).
pub fn user_exists(
    rules: &RuleSet,
    batch: &StateBatch<'_>,
    id: &str,
) -> Result<bool, crate::store::StoreError> {
    let directory: DirectoryState = state::get_or_default(batch, &crate::store::keys::directory())?;
    Ok(rules.users.contains_key(id) || directory.users.contains_key(id))
}

/// Pushes a step's events into the outbox, in order.
pub fn push_events(
    outbox: &OutboxWriter,
    batch: &mut StateBatch<'_>,
    at: DateTime<Utc>,
    events: &[EventDraft],
) -> Result<(), crate::store::StoreError> {
    for event in events {
        outbox.push(batch, at, event)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
