//! An agent's reply that went out from a ticket moves the ticket: the `agent_emailed` status
//! trigger, fired by the processor in the step that records the provider's acceptance (or, for
//! chat, the hand-over to the widget's backend), so that a replay fires it exactly as often.

use crate::events::data::StatusTrigger;
use chrono::{DateTime, Utc};

use super::messages::fire;
use super::{Followups, Step};
use crate::conversations::Conversation;
use crate::events::OutboxWriter;
use crate::ids::Minter;
use crate::model::Ticket;
use crate::routing::RuleSet;
use crate::store::{keys, StateBatch, StoreError};

/// What one agent reply did to its ticket.
#[derive(Debug, Default)]
pub struct ReplyEffect {
    /// The ticket's status moved.
    pub fired: bool,
    /// Actions of the status reached and conversations closed, for outbound to carry out in
    /// the same step.
    pub followups: Followups,
}

/// Fires `agent_emailed` for an agent's reply sent on `conversation_id`. The ticket is the
/// conversation's ticket now (a merge since the reply was queued moves it to the survivor);
/// a conversation or ticket deleted meanwhile, or one on a channel without tickets, fires
/// nothing. The pipeline's `include_chat` decides for chat and Messenger conversations.
pub fn agent_replied(
    rules: &RuleSet,
    batch: &mut StateBatch<'_>,
    (minter, outbox): (&Minter, &OutboxWriter),
    at: DateTime<Utc>,
    conversation_id: &str,
) -> Result<ReplyEffect, StoreError> {
    let Some(conversation) = batch.get::<Conversation>(&keys::conversation(conversation_id))?
    else {
        return Ok(ReplyEffect::default());
    };
    let Some(mut ticket) = batch.get::<Ticket>(&keys::ticket(&conversation.ticket_id))? else {
        return Ok(ReplyEffect::default());
    };
    let mut step = Step {
        batch,
        rules,
        minter,
        at,
        conversation: Some(conversation.id.clone()),
        events: Vec::new(),
        actions: Vec::new(),
        closed: Vec::new(),
    };
    if ticket.routing.ticketless || !ticket.conversations.contains(&conversation.id) {
        return Ok(ReplyEffect::default());
    }
    let fired = fire(&mut step, &mut ticket, StatusTrigger::AgentEmailed)?;
    if fired {
        step.save_ticket(&mut ticket);
    }
    let followups = step.followups();
    let events = step.events;
    super::push_events(outbox, batch, at, &events)?;
    Ok(ReplyEffect { fired, followups })
}
