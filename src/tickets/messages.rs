//! The processor's routing step, right after threading: a new ticket gets its pipeline, status
//! and owner; a reply may fire `customer_replied`; a reply on a closed ticket reopens it or
//! opens a new one; spam senders are flagged; ticketless channels keep conversations only.

use serde_json::Value;

use super::ops::Cause;

use super::{Followups, Step};
use crate::config::{ClosedReply, CUSTOMER_REPLIED_TARGET};
use crate::conversations::Threaded;
use crate::events::data::{
    IgnoredProperty, ReopenReason, StatusTrigger, TicketRouting, TicketView,
};
use crate::events::{EventDraft, EventType};
use crate::ids::Minter;
use crate::model::{Contact, Inbound, MessageKind, Routing, Ticket};
use crate::routing::{ChannelRules, RuleSet};
use crate::store::{keys, StateBatch, StoreError};

/// What the routing step decided about one message.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// Events that follow the message's own event, in order.
    pub events: Vec<EventDraft>,
    /// Status-reached actions and conversations closed, for outbound to carry out.
    pub followups: Followups,
    /// The channel does not open tickets: the message is a conversation event only.
    pub ticketless: bool,
    /// The sender was marked as spam.
    pub spam: bool,
    /// Ticket properties the message gave and the new ticket did not take, with why.
    pub ignored: Vec<IgnoredProperty>,
}

impl Routed {
    /// The type and subject of the message's own event.
    pub fn message_event(&self, threaded: &Threaded) -> (EventType, String) {
        if self.ticketless {
            let id = threaded.conversation.id.clone();
            (EventType::ConversationMessageAdded, id)
        } else if threaded.new_ticket {
            (EventType::TicketCreated, threaded.ticket.id.clone())
        } else {
            (EventType::TicketMessageAdded, threaded.ticket.id.clone())
        }
    }

    /// The ticket as the message event shows it, with its routing fields; `None` on a
    /// channel that opens no tickets.
    pub fn ticket_view(&self, ticket: &Ticket) -> Option<TicketView> {
        if self.ticketless {
            return None;
        }
        let routing = &ticket.routing;
        Some(TicketView {
            ticket: ticket.into(),
            routing: Some(TicketRouting {
                pipeline: routing.pipeline.clone(),
                status: routing.status.clone(),
                owner: routing.owner.clone(),
                priority: routing.priority.clone(),
                category: routing.category.clone(),
                ignored: self.ignored.clone(),
            }),
        })
    }
}

/// What keeps a message from acting on its ticket: a spam sender's is never assigned or
/// acknowledged; history (an import, a late catch-up) fires no trigger and no action.
#[derive(Debug, Clone, Copy, Default)]
struct Quiet {
    spam: bool,
    history: bool,
}

/// Routes one threaded message. `threaded` changes when the message opens a new ticket in
/// place of a closed one. `history` says the message is an import or a late catch-up
/// ([`RuleSet::history`]): it opens or joins a ticket, but fires no trigger or action.
pub fn after_threading(
    rules: &RuleSet,
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    inbound: &Inbound,
    (threaded, history): (&mut Threaded, bool),
) -> Result<Routed, StoreError> {
    let mut step = Step {
        batch,
        rules,
        minter,
        at: inbound.received_at,
        conversation: Some(threaded.conversation.id.clone()),
        events: Vec::new(),
        actions: Vec::new(),
        closed: Vec::new(),
    };
    if step.purge_expired_spam()? {
        // The purge may have changed the ticket the message is on (dropped a conversation).
        if let Some(ticket) = step.ticket(&threaded.ticket.id)? {
            threaded.ticket = ticket;
        }
    }
    let channel = rules.channel(&inbound.channel);
    let contact_id = threaded.conversation.contact_id.clone();
    let spam = step.batch.contains(&keys::spam_contact(&contact_id))?;
    let conversation_id = threaded.conversation.id.clone();
    // Only a conversation that starts with a forward needs bookkeeping from its first message;
    // the default (absent) state says "not from a forward".
    if threaded.conversation.messages == 1 && inbound.flags.forwarded {
        let mut bookkeeping = step.conversation_state(&conversation_id)?;
        bookkeeping.from_forward = true;
        step.save_conversation_state(&conversation_id, &bookkeeping);
    }
    let given = inbound.extra.get("ticket").and_then(Value::as_object);
    let mut ignored = Vec::new();
    let quiet = Quiet { spam, history };
    if threaded.new_ticket {
        ignored = new_ticket(
            &mut step,
            (&inbound.channel, channel),
            threaded,
            quiet,
            given,
        )?;
    } else if !threaded.ticket.routing.ticketless && !spam && !history {
        on_reply(&mut step, channel, inbound, threaded)?;
    }
    let followups = step.followups();
    Ok(Routed {
        events: step.events,
        followups,
        ticketless: threaded.ticket.routing.ticketless,
        spam,
        ignored,
    })
}

/// A new ticket: its defaults, its owner, and the actions of its first status. Returns the
/// properties the message gave that the ticket did not take.
fn new_ticket(
    step: &mut Step<'_, '_>,
    (channel_id, channel): (&str, &ChannelRules),
    threaded: &mut Threaded,
    quiet: Quiet,
    given: Option<&serde_json::Map<String, Value>>,
) -> Result<Vec<IgnoredProperty>, StoreError> {
    let ticket = &mut threaded.ticket;
    ticket.routing = Routing {
        pipeline: channel.pipeline.clone(),
        open: true,
        trigger_conversations: vec![threaded.conversation.id.clone()],
        ticketless: !channel.create,
        chat: channel.chat,
        ..Routing::default()
    };
    if ticket.routing.ticketless {
        step.save_ticket(ticket);
        return Ok(Vec::new());
    }
    let opening = super::defaults::opening(step.rules, channel, given);
    for ignored in &opening.ignored {
        step.batch.count(
            "deskgate_form_fields_ignored_total",
            &[("channel", channel_id), ("field", &ignored.field)],
            1,
        );
    }
    let routing = &mut ticket.routing;
    routing.pipeline = opening.pipeline;
    routing.priority = opening.priority;
    routing.category = opening.category;
    let status = opening.status;
    if let Some(status) = &status {
        routing.open = step.status_is_open(routing, status).unwrap_or(true);
    }
    routing.status = status.clone();
    // A spam sender's ticket is kept for the record but never handed to an agent.
    if !quiet.spam {
        let contact: Option<Contact> = step.batch.get(&keys::contact(&ticket.contact_id))?;
        step.assign(ticket, channel, contact.as_ref())?;
    }
    if let (Some(status), false) = (&status, quiet.spam || quiet.history) {
        step.actions_on_entry(ticket, status)?;
    }
    step.save_ticket(ticket);
    Ok(opening.ignored)
}

/// A message on an existing ticket. When the reply opens a new ticket in place of a closed
/// one, `threaded` names the new ticket afterwards.
fn on_reply(
    step: &mut Step<'_, '_>,
    channel: &ChannelRules,
    inbound: &Inbound,
    threaded: &mut Threaded,
) -> Result<(), StoreError> {
    let conversation_id = threaded.conversation.id.clone();
    let from_forward = step.conversation_state(&conversation_id)?.from_forward;
    let customer_reply = is_customer_reply(inbound) && !from_forward;
    let routing = &threaded.ticket.routing;
    let closed_reply = step.pipeline(routing).map(|p| p.closed_reply);
    if !routing.open && customer_reply && closed_reply == Some(ClosedReply::NewTicket) {
        let mut conversation = threaded.conversation.clone();
        let (new, _old) = step.detach(&mut conversation, &threaded.ticket)?;
        threaded.conversation = conversation;
        threaded.ticket = new;
        threaded.new_ticket = true;
        step.reopen_conversation(&threaded.ticket, &conversation_id, ReopenReason::NewTicket)?;
        let channel = (inbound.channel.as_str(), channel);
        return new_ticket(step, channel, threaded, Quiet::default(), None).map(|_| ());
    }
    if customer_reply {
        // The customer wrote again on a closed conversation: it is live again.
        let reason = ReopenReason::CustomerReplied;
        step.reopen_conversation(&threaded.ticket, &conversation_id, reason)?;
    }
    let ticket = &mut threaded.ticket;
    let known = ticket
        .routing
        .trigger_conversations
        .contains(&conversation_id);
    // After a close and reopen, a new thread joining the ticket counts as the ticket's thread.
    if !known && ticket.routing.reopened && threaded.conversation.messages == 1 {
        ticket
            .routing
            .trigger_conversations
            .push(conversation_id.clone());
    }
    let counts = ticket
        .routing
        .trigger_conversations
        .contains(&conversation_id);
    if customer_reply && (counts || !ticket.routing.open) {
        if !counts {
            ticket.routing.trigger_conversations.push(conversation_id);
        }
        fire(step, ticket, StatusTrigger::CustomerReplied)?;
    }
    step.save_ticket(ticket);
    Ok(())
}

/// A message a customer wrote, as opposed to automatic mail, bounces, forwards, echoes of our
/// own messages, reactions and button presses.
pub fn is_customer_reply(inbound: &Inbound) -> bool {
    inbound.kind == MessageKind::Message
        && !inbound.flags.automatic
        && inbound.flags.bounce.is_none()
        && !inbound.flags.forwarded
}

/// Fires a status trigger when the ticket's pipeline has it on. A closed ticket that a
/// customer writes to reopens even when the trigger is off (to the first open status).
pub(super) fn fire(
    step: &mut Step<'_, '_>,
    ticket: &mut Ticket,
    trigger: StatusTrigger,
) -> Result<bool, StoreError> {
    let state = &ticket.routing;
    let Some(pipeline) = step.pipeline(state) else {
        return Ok(false);
    };
    let (config, default) = match trigger {
        StatusTrigger::CustomerReplied => {
            (&pipeline.triggers.customer_replied, CUSTOMER_REPLIED_TARGET)
        }
        StatusTrigger::AgentEmailed => (
            &pipeline.triggers.agent_emailed,
            crate::config::AGENT_EMAILED_TARGET,
        ),
    };
    let chat_ok = !state.chat || pipeline.triggers.include_chat;
    let target = if config.enabled && chat_ok {
        config.target.clone().unwrap_or_else(|| default.to_owned())
    } else if !state.open && trigger == StatusTrigger::CustomerReplied {
        match pipeline.statuses.iter().find(|s| s.open) {
            Some(first_open) => first_open.id.clone(),
            None => return Ok(false),
        }
    } else {
        return Ok(false);
    };
    step.set_status(ticket, &target, Cause::Trigger(trigger))
}
