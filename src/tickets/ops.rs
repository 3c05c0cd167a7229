//! Ticket-state operations shared by the message step and the control commands: status
//! changes with their consequences (conversations closed or reopened, open-ticket counts,
//! status-reached actions), assignment, and moving a conversation to a new ticket.

use std::collections::BTreeMap;

use super::state::{get_or_default, ConversationState};
use super::{RequestedAction, Step};
use crate::config::{ActionConfig, ActionKind, PipelineConfig, RuleKind};
use crate::conversations::Conversation;
use crate::events::data::{
    ActionFields, CloseReason, ConversationClosed, ConversationReopened, EventData, Recipient,
    RecipientKind, ReopenReason, StatusCause, StatusTrigger, TicketActionRequested, TicketAssigned,
    TicketStatusChanged, TicketStatusTrigger,
};
use crate::model::{Contact, Routing, Ticket};
use crate::routing::{decide, snapshot_from, ChannelRules, DirectoryState, Snapshot};
use crate::store::{keys, StoreError};

/// Where a ticket was before a move between pipelines.
pub struct Moved {
    pub pipeline: Option<String>,
    pub status: Option<String>,
}

/// Why a status changes.
#[derive(Debug, Clone, Copy)]
pub enum Cause {
    /// A status trigger fired.
    Trigger(StatusTrigger),
    /// The ticket store set it through the control API.
    Control,
    /// The config's `[[routing.moves]]` took the ticket out of a removed pipeline or status.
    ConfigMove,
}

impl Step<'_, '_> {
    /// The ticket `id`, if the mirror has it.
    pub(super) fn ticket(&self, id: &str) -> Result<Option<Ticket>, StoreError> {
        self.batch.get(&keys::ticket(id))
    }

    /// Saves a ticket, and keeps the index of closed tickets with it: a ticket that is closed
    /// now and was not is entered at this step's time; one open again leaves it.
    pub(super) fn save_ticket(&mut self, ticket: &mut Ticket) {
        match (ticket.routing.open, ticket.closed_at) {
            (false, None) => {
                self.batch.put(keys::closed(self.at, &ticket.id), &());
                ticket.closed_at = Some(self.at);
            }
            (true, Some(at)) => {
                self.batch.remove(keys::closed(at, &ticket.id));
                ticket.closed_at = None;
            }
            _ => {}
        }
        self.batch.put(keys::ticket(&ticket.id), &*ticket);
    }

    pub(super) fn conversation_state(&self, id: &str) -> Result<ConversationState, StoreError> {
        get_or_default(self.batch, &keys::conversation_state(id))
    }

    pub(super) fn save_conversation_state(&mut self, id: &str, state: &ConversationState) {
        self.batch.put(keys::conversation_state(id), state);
    }

    pub(super) fn pipeline(&self, routing: &Routing) -> Option<&PipelineConfig> {
        routing
            .pipeline
            .as_deref()
            .and_then(|p| self.rules.pipelines.get(p))
    }

    /// Whether `status` is an open status of the ticket's pipeline; `None` when unknown.
    pub(super) fn status_is_open(&self, routing: &Routing, status: &str) -> Option<bool> {
        self.pipeline(routing)?
            .statuses
            .iter()
            .find(|s| s.id == status)
            .map(|s| s.open)
    }

    /// Adds `delta` to a user's count of open tickets.
    pub(super) fn count_open(&mut self, owner: Option<&str>, delta: i64) -> Result<(), StoreError> {
        let Some(owner) = owner else {
            return Ok(());
        };
        let mut counts: BTreeMap<String, u64> = get_or_default(self.batch, &keys::open_tickets())?;
        let count = counts.entry(owner.to_owned()).or_default();
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            counts.remove(owner);
        }
        self.batch.put(keys::open_tickets(), &counts);
        Ok(())
    }

    pub(super) fn snapshot(&self, channel: Option<&str>) -> Result<Snapshot, StoreError> {
        let directory: DirectoryState = get_or_default(self.batch, &keys::directory())?;
        let open = get_or_default(self.batch, &keys::open_tickets())?;
        let last = match channel {
            Some(channel) => self.batch.get(&keys::rotation(channel))?,
            None => None,
        };
        Ok(snapshot_from(self.rules, &directory, open, last))
    }

    /// Decides and records the owner of a new ticket, with a `deskgate.ticket.assigned` event.
    pub(super) fn assign(
        &mut self,
        ticket: &mut Ticket,
        rules: &ChannelRules,
        contact: Option<&Contact>,
    ) -> Result<(), StoreError> {
        if rules.routing.rule == RuleKind::Nobody {
            // Nothing to decide and nothing to explain: no event for channels that never route.
            return Ok(());
        }
        let snapshot = self.snapshot(Some(&ticket.channel))?;
        let owner = contact.and_then(|contact| contact.owner.as_deref());
        let decision = decide(&rules.routing, &snapshot, owner);
        if let Some(picked) = &decision.picked_by_rotation {
            self.batch.put(keys::rotation(&ticket.channel), picked);
        }
        ticket.routing.owner = decision.assignee.clone();
        if ticket.routing.open {
            self.count_open(ticket.routing.owner.as_deref(), 1)?;
        }
        let outcome = if decision.assignee.is_some() {
            "assigned"
        } else {
            "unassigned"
        };
        self.batch.count(
            "deskgate_routing_decisions_total",
            &[("channel", &ticket.channel), ("outcome", outcome)],
            1,
        );
        let data = TicketAssigned {
            ticket: ticket.id.clone(),
            assignee: decision.assignee.clone(),
            rule: rules.routing.rule.into(),
            trace: decision.trace.clone(),
        };
        self.emit(
            &ticket.id,
            Some(&ticket.channel),
            EventData::TicketAssigned(data),
        );
        Ok(())
    }

    /// Moves a ticket to a valid status of its pipeline and applies what follows from it.
    /// Returns false when the ticket already was in that status.
    pub(super) fn set_status(
        &mut self,
        ticket: &mut Ticket,
        status: &str,
        cause: Cause,
    ) -> Result<bool, StoreError> {
        self.set_status_from(ticket, status, cause, None)
    }

    /// [`Step::set_status`] for a ticket that has just left the pipeline `moved.pipeline` in
    /// status `moved.status`: its status event says so.
    pub(super) fn set_status_from(
        &mut self,
        ticket: &mut Ticket,
        status: &str,
        cause: Cause,
        moved: Option<Moved>,
    ) -> Result<bool, StoreError> {
        if ticket.routing.status.as_deref() == Some(status) {
            return Ok(false);
        }
        let open = self.status_is_open(&ticket.routing, status).unwrap_or(true);
        let old = ticket.routing.status.replace(status.to_owned());
        let (old, old_pipeline) = match moved {
            Some(moved) => (moved.status, moved.pipeline),
            None => (old, None),
        };
        let was_open = ticket.routing.open;
        ticket.routing.open = open;
        let pipeline = ticket.routing.pipeline.clone();
        let data = match cause {
            Cause::Trigger(trigger) => EventData::TicketStatusTrigger(TicketStatusTrigger {
                ticket: ticket.id.clone(),
                trigger,
                old_status: old,
                new_status: status.to_owned(),
                pipeline,
            }),
            Cause::Control | Cause::ConfigMove => {
                EventData::TicketStatusChanged(TicketStatusChanged {
                    ticket: ticket.id.clone(),
                    cause: match cause {
                        Cause::ConfigMove => StatusCause::ConfigMove,
                        _ => StatusCause::Control,
                    },
                    old_status: old,
                    new_status: status.to_owned(),
                    pipeline,
                    old_pipeline,
                })
            }
        };
        self.emit(&ticket.id, Some(&ticket.channel), data);
        if let Cause::Trigger(trigger) = cause {
            self.batch.count(
                "deskgate_status_triggers_total",
                &[("trigger", trigger.as_str())],
                1,
            );
        }
        if was_open && !open {
            self.count_open(ticket.routing.owner.as_deref(), -1)?;
            for conversation in &ticket.conversations {
                self.close_conversation(ticket, conversation, CloseReason::TicketClosed)?;
            }
        } else if !was_open && open {
            self.count_open(ticket.routing.owner.as_deref(), 1)?;
            ticket.routing.reopened = true;
            // A ticket with several threads reopens without guessing which one is meant.
            if let [only] = ticket.conversations.as_slice() {
                self.reopen_conversation(ticket, only, ReopenReason::TicketReopened)?;
            }
        }
        self.actions_on_entry(ticket, status)?;
        Ok(true)
    }

    /// Closes an open conversation, with a `deskgate.conversation.closed` event; one that is
    /// closed stays as it is, without one.
    pub(super) fn close_conversation(
        &mut self,
        ticket: &Ticket,
        conversation: &str,
        reason: CloseReason,
    ) -> Result<(), StoreError> {
        let data = EventData::ConversationClosed(ConversationClosed {
            ticket: ticket.id.clone(),
            conversation: conversation.to_owned(),
            reason,
        });
        self.set_closed(ticket, conversation, true, data)
    }

    /// Opens a closed conversation again, with a `deskgate.conversation.reopened` event; one
    /// that is open stays as it is, without one.
    pub(super) fn reopen_conversation(
        &mut self,
        ticket: &Ticket,
        conversation: &str,
        reason: ReopenReason,
    ) -> Result<(), StoreError> {
        let data = EventData::ConversationReopened(ConversationReopened {
            ticket: ticket.id.clone(),
            conversation: conversation.to_owned(),
            reason,
        });
        self.set_closed(ticket, conversation, false, data)
    }

    /// Sets a conversation's `closed` flag and emits `data` when that changed it.
    fn set_closed(
        &mut self,
        ticket: &Ticket,
        conversation: &str,
        closed: bool,
        data: EventData,
    ) -> Result<(), StoreError> {
        let mut bookkeeping = self.conversation_state(conversation)?;
        if bookkeeping.closed == closed {
            return Ok(());
        }
        bookkeeping.closed = closed;
        self.save_conversation_state(conversation, &bookkeeping);
        if closed {
            self.closed.push(conversation.to_owned());
        }
        self.emit(&ticket.id, Some(&ticket.channel), data);
        Ok(())
    }

    /// Decides the actions configured for entering `status`: each is announced as an event
    /// and kept in [`Step::actions`] for outbound.
    pub(super) fn actions_on_entry(
        &mut self,
        ticket: &Ticket,
        status: &str,
    ) -> Result<(), StoreError> {
        let state = &ticket.routing;
        let Some(pipeline) = self.pipeline(state) else {
            return Ok(());
        };
        let actions: Vec<_> = pipeline
            .actions
            .iter()
            .filter(|a| a.status == status && (a.include_chat || !state.chat))
            .cloned()
            .collect();
        if actions.is_empty() {
            return Ok(());
        }
        let conversation = self
            .conversation
            .clone()
            .or_else(|| ticket.conversations.last().cloned());
        let Some(conversation) = conversation else {
            return Ok(());
        };
        let snapshot = self.snapshot(None)?;
        let contact: Option<Contact> = self.batch.get(&keys::contact(&ticket.contact_id))?;
        for action in actions {
            let recipients = recipients(&action, ticket, &snapshot, contact.as_ref());
            if recipients.is_empty() {
                continue;
            }
            let fields = ActionFields {
                subject: ticket.subject.clone(),
                contact_id: ticket.contact_id.clone(),
                pipeline: state.pipeline.clone(),
                status: state.status.clone(),
                owner: state.owner.clone(),
                priority: state.priority.clone(),
                category: state.category.clone(),
            };
            // The template sees the same fields as the event, as a map of JSON values.
            let template_fields = match serde_json::to_value(&fields) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            let emails = recipients.iter().map(|r| r.email.clone()).collect();
            let data = TicketActionRequested {
                ticket: ticket.id.clone(),
                status: status.to_owned(),
                action: action.action,
                template: action.template.clone(),
                recipients,
                fields,
            };
            self.emit(
                &ticket.id,
                Some(&ticket.channel),
                EventData::TicketActionRequested(data),
            );
            self.actions.push(RequestedAction {
                action: action.action,
                template: action.template.clone(),
                ticket_id: ticket.id.clone(),
                channel: ticket.channel.clone(),
                conversation_id: conversation.clone(),
                recipients: emails,
                fields: template_fields,
            });
        }
        Ok(())
    }

    /// Moves a conversation off its ticket onto a new ticket (split, or a reply on a closed
    /// ticket whose pipeline opens new tickets). Returns the new ticket and the old one.
    pub(super) fn detach(
        &mut self,
        conversation: &mut Conversation,
        old: &Ticket,
    ) -> Result<(Ticket, Ticket), StoreError> {
        let mut old = old.clone();
        // Cloning keeps whatever fields other work adds to the mirror's tickets.
        let mut new = old.clone();
        new.id = self.minter.mint(self.batch, "ticket")?;
        new.number = crate::conversations::next_ticket_number(self.batch, &new.id)?;
        new.merge_suggested.clear();
        new.conversations = vec![conversation.id.clone()];
        new.created_at = self.at;
        new.updated_at = self.at;
        // The new ticket is routed by the caller, from nothing.
        new.routing = Routing::default();
        new.closed_at = None;
        old.conversations.retain(|c| c != &conversation.id);
        old.updated_at = self.at;
        conversation.ticket_id = new.id.clone();
        self.batch.put(keys::ticket(&old.id), &old);
        self.batch.put(keys::ticket(&new.id), &new);
        self.batch
            .put(keys::contact_ticket(&new.contact_id, &new.id), &());
        self.batch
            .put(keys::conversation(&conversation.id), conversation);
        Ok((new, old))
    }

    /// Removes a ticket and its conversations from the mirror (the store deleted them).
    pub(super) fn delete_ticket(&mut self, ticket: &Ticket) -> Result<(), StoreError> {
        if ticket.routing.open {
            self.count_open(ticket.routing.owner.as_deref(), -1)?;
        }
        for id in &ticket.conversations {
            self.forget_conversation(id)?;
        }
        self.drop_ticket_mirror(&ticket.id)
    }

    /// Removes a ticket's own keys (not its conversations'): deleted, or merged into another.
    pub(super) fn drop_ticket_mirror(&mut self, id: &str) -> Result<(), StoreError> {
        if let Some(ticket) = self.ticket(id)? {
            if let Some(at) = ticket.closed_at {
                self.batch.remove(keys::closed(at, id));
            }
            crate::conversations::forget_ticket_number(self.batch, &ticket);
            self.batch
                .remove(keys::contact_ticket(&ticket.contact_id, id));
        }
        self.batch.remove(keys::ticket(id));
        self.batch.remove(keys::agent_emailed(id));
        Ok(())
    }

    /// Removes a conversation with its thread and Message-ID indexes, so that a later message
    /// opens a new one, and what outbound keeps for answering on it. Its contact's index of
    /// conversations and its index of journal records stay: erasing the contact follows them
    /// to redact the records still in the journal (see `forget::forget_closed` for when they go).
    pub(super) fn forget_conversation(&mut self, id: &str) -> Result<(), StoreError> {
        if let Some(conversation) = self.batch.get::<Conversation>(&keys::conversation(id))? {
            // A conversation split off by message shares its first mail's id as thread key with
            // no entry of its own: the entry may be another conversation's.
            let thread = keys::thread(&conversation.channel, &conversation.thread_key);
            if self.batch.get::<String>(&thread)?.as_deref() == Some(id) {
                self.batch.remove(thread);
            }
        }
        self.batch.remove(keys::conversation(id));
        self.batch.remove(keys::conversation_state(id));
        crate::conversations::forget_email_ids(self.batch, id)?;
        crate::outbound::erase::drop_conversation(self.batch, id)
    }
}

/// Who an action goes to: the customer's addresses, or the users, teams' members and owner
/// named, each once, with the address the directory has for them.
fn recipients(
    action: &ActionConfig,
    ticket: &Ticket,
    snapshot: &Snapshot,
    contact: Option<&Contact>,
) -> Vec<Recipient> {
    let mut recipients = Vec::new();
    let mut add = |kind: RecipientKind, id: &str, email: Option<&String>| {
        if let Some(email) = email {
            let entry = Recipient {
                kind,
                id: id.to_owned(),
                email: email.clone(),
            };
            if !recipients.contains(&entry) {
                recipients.push(entry);
            }
        }
    };
    match action.action {
        ActionKind::Acknowledge => {
            // One acknowledgement, to the customer's first address: the promise names only
            // the address it is kept to.
            let first = contact.and_then(|contact| contact.emails().next().map(str::to_owned));
            add(RecipientKind::Contact, &ticket.contact_id, first.as_ref());
        }
        ActionKind::Notify => {
            let mut users: Vec<&String> = action.users.iter().collect();
            for team in &action.teams {
                let members = snapshot
                    .users
                    .iter()
                    .filter(|(_, u)| u.teams.contains(team));
                users.extend(members.map(|(id, _)| id));
            }
            users.extend(ticket.routing.owner.as_ref().filter(|_| action.owner));
            for id in users {
                add(
                    RecipientKind::User,
                    id,
                    snapshot.users.get(id).and_then(|u| u.email.as_ref()),
                );
            }
        }
    }
    recipients
}
