//! Control API mutations, applied by the processor in journal order (splits are in `split`). Each stores an
//! [`ControlOutcome`] under `control/{seq}` for the handler that waits on it; a refused command (an
//! unknown ticket, an unknown status) is a [`Refusal`], not a quarantine.
//! The config's moves of stored tickets (`[[routing.moves]]`) arrive here too, journaled by
//! the daemon itself at start or reload ([`ControlCommand::ApplyMoves`]).

use serde_json::{json, Value};

use super::messages::fire;
use super::ops::{Cause, Moved};
use super::state::{get_or_default, SpamList};
use super::{Followups, Step};
use crate::config::TeamConfig;
use crate::conversations::Conversation;
use crate::events::data::StatusTrigger;
use crate::events::data::{
    AssignmentRule, CloseReason, EventData, TicketAssigned, TicketDeleted, TicketMerged,
};
use crate::events::OutboxWriter;
use crate::ids::Minter;
use crate::model::{
    Availability, ControlCommand, ControlOutcome, ControlRecord, PipelineMove, Ticket,
};
use crate::routing::{DirectoryState, RuleSet, User};
use crate::store::{keys, StateBatch, StoreError};

pub(super) use crate::model::Refusal;
pub(super) type Answer = Result<Value, Refusal>;

pub(super) fn not_found(what: &str, id: &str) -> Refusal {
    Refusal::NotFound(format!("no {what} {id:?}"))
}

/// Applies one control record and stores its outcome. Returns what outbound carries out in
/// the same step: the status-reached actions it decided on (closing a ticket can notify
/// someone) and the conversations it closed.
pub fn apply_control(
    rules: &RuleSet,
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    outbox: &OutboxWriter,
    seq: u64,
    record: &ControlRecord,
) -> Result<Followups, StoreError> {
    let mut step = Step {
        batch,
        rules,
        minter,
        at: record.at,
        conversation: None,
        events: Vec::new(),
        actions: Vec::new(),
        closed: Vec::new(),
    };
    step.purge_expired_spam()?;
    let savepoint = step.batch.savepoint();
    let answer = step.command(&record.command)?;
    let outcome = match answer {
        Ok(body) => ControlOutcome::Done(body),
        Err(refusal) => {
            // A refused command leaves nothing behind.
            step.batch.rollback_to(savepoint);
            step.events.clear();
            step.followups();
            ControlOutcome::Refused(refusal)
        }
    };
    let events = std::mem::take(&mut step.events);
    let followups = step.followups();
    batch.put(keys::control_outcome(seq), &outcome);
    super::push_events(outbox, batch, record.at, &events)?;
    Ok(followups)
}

impl Step<'_, '_> {
    fn command(&mut self, command: &ControlCommand) -> Result<Answer, StoreError> {
        match command {
            ControlCommand::PutUser {
                id,
                name,
                email,
                seat,
                teams,
            } => self.put_user(id, name, email.clone(), *seat, teams),
            ControlCommand::PutTeam { id, label } => self.put_team(id, label),
            ControlCommand::SetAvailability { user, availability } => {
                self.set_availability(user, *availability)
            }
            ControlCommand::SetTicketStatus { ticket, status } => {
                self.set_ticket_status(ticket, status)
            }
            ControlCommand::SetTicketOwner { ticket, owner } => {
                self.set_owner(ticket, owner.as_deref())
            }
            ControlCommand::CloseConversation { conversation } => {
                let Some((conversation, ticket)) = self.conversation_and_ticket(conversation)?
                else {
                    return Ok(Err(not_found("conversation", conversation)));
                };
                self.close_conversation(&ticket, &conversation.id, CloseReason::Control)?;
                Ok(Ok(
                    json!({ "conversation": conversation.id, "closed": true }),
                ))
            }
            ControlCommand::MergeTickets { survivor, merged } => self.merge(survivor, merged),
            ControlCommand::SplitConversation {
                conversation,
                messages,
            } => self.split(conversation, messages.as_deref()),
            ControlCommand::DeleteTicket { ticket } => {
                let Some(ticket) = self.ticket(ticket)? else {
                    return Ok(Err(not_found("ticket", ticket)));
                };
                self.delete_with_event(&ticket)
            }
            ControlCommand::DeleteConversation { conversation } => {
                let Some((_, ticket)) = self.conversation_and_ticket(conversation)? else {
                    return Ok(Err(not_found("conversation", conversation)));
                };
                // As in the store, a conversation and its ticket go together.
                self.delete_with_event(&ticket)
            }
            ControlCommand::MarkSpam { conversation } => self.mark_spam(conversation),
            // The processor applies these itself: they need the journal.
            ControlCommand::RetryQuarantined { seq } => Ok(Err(Refusal::Internal(format!(
                "retry of journal record {seq} reached the ticket commands"
            )))),
            ControlCommand::MoveTicket {
                ticket,
                pipeline,
                status,
            } => self.move_ticket(ticket, pipeline, status),
            ControlCommand::ApplyMoves { moves } => self.apply_moves(moves),
            ControlCommand::UnmarkSpamConversation { conversation } => {
                self.unmark_spam_conversation(conversation)
            }
            ControlCommand::UnmarkSpamContact { contact } => self.unmark_spam_contact(contact),
            ControlCommand::AgentEmailed {
                ticket,
                conversation,
            } => self.agent_emailed(ticket, conversation.as_deref()),
        }
    }

    fn agent_emailed(
        &mut self,
        id: &str,
        conversation: Option<&str>,
    ) -> Result<Answer, StoreError> {
        let Some(mut ticket) = self.ticket(id)? else {
            return Ok(Err(not_found("ticket", id)));
        };
        if let Some(conversation) = conversation {
            if !ticket.conversations.iter().any(|c| c == conversation) {
                let message = format!(
                    "conversation: {conversation:?} is not a conversation of ticket {:?}",
                    ticket.id
                );
                return Ok(Err(Refusal::Invalid(message)));
            }
        }
        let fired = fire(self, &mut ticket, StatusTrigger::AgentEmailed)?;
        self.save_ticket(&mut ticket);
        Ok(Ok(
            json!({ "ticket": ticket.id, "fired": fired, "status": ticket.routing.status }),
        ))
    }

    fn put_team(&mut self, id: &str, label: &str) -> Result<Answer, StoreError> {
        let mut directory: DirectoryState = get_or_default(self.batch, &keys::directory())?;
        let team = TeamConfig {
            label: label.to_owned(),
        };
        directory.teams.insert(id.to_owned(), team.clone());
        self.batch.put(keys::directory(), &directory);
        Ok(Ok(json!({ "id": id, "team": team })))
    }

    fn set_availability(
        &mut self,
        user: &str,
        availability: Availability,
    ) -> Result<Answer, StoreError> {
        if !self.snapshot(None)?.users.contains_key(user) {
            return Ok(Err(not_found("user", user)));
        }
        let mut directory: DirectoryState = get_or_default(self.batch, &keys::directory())?;
        directory.availability.insert(user.to_owned(), availability);
        self.batch.put(keys::directory(), &directory);
        Ok(Ok(json!({ "id": user, "availability": availability })))
    }

    fn put_user(
        &mut self,
        id: &str,
        name: &str,
        email: Option<String>,
        seat: bool,
        teams: &[String],
    ) -> Result<Answer, StoreError> {
        let mut directory: DirectoryState = get_or_default(self.batch, &keys::directory())?;
        for team in teams {
            if !self.rules.teams.contains_key(team) && !directory.teams.contains_key(team) {
                return Ok(Err(Refusal::Invalid(format!(
                    "teams: unknown team {team:?}"
                ))));
            }
        }
        // A user replaced through the API keeps the availability it has now (a configured
        // user's starting one included).
        let current = self.snapshot(None)?.users.get(id).map(|u| u.availability);
        let availability = directory
            .availability
            .get(id)
            .copied()
            .or(current)
            .unwrap_or_default();
        let user = User {
            name: name.to_owned(),
            email,
            seat,
            teams: teams.to_vec(),
            availability,
        };
        directory.users.insert(id.to_owned(), user.clone());
        self.batch.put(keys::directory(), &directory);
        Ok(Ok(json!({ "id": id, "user": user })))
    }

    fn set_ticket_status(&mut self, id: &str, status: &str) -> Result<Answer, StoreError> {
        let Some(mut ticket) = self.ticket(id)? else {
            return Ok(Err(not_found("ticket", id)));
        };
        let Some(pipeline) = ticket.routing.pipeline.clone() else {
            return Ok(Err(Refusal::Conflict(format!(
                "ticket {id:?} has no pipeline"
            ))));
        };
        if self.status_is_open(&ticket.routing, status).is_none() {
            let message = format!("status: {status:?} is not a status of pipeline {pipeline:?}");
            return Ok(Err(Refusal::Invalid(message)));
        }
        let changed = self.set_status(&mut ticket, status, Cause::Control)?;
        self.save_ticket(&mut ticket);
        Ok(Ok(
            json!({ "ticket": id, "changed": changed, "routing": ticket.routing }),
        ))
    }

    /// Moves a ticket into `pipeline` at `status`, as the store does when an agent moves it;
    /// the status's actions run as for any status reached.
    fn move_ticket(
        &mut self,
        id: &str,
        pipeline: &str,
        status: &str,
    ) -> Result<Answer, StoreError> {
        let Some(mut ticket) = self.ticket(id)? else {
            return Ok(Err(not_found("ticket", id)));
        };
        self.relocate(&mut ticket, (pipeline, status), Cause::Control)
    }

    /// Moves every ticket that sits where one of `moves` applies, in key order (so a replay
    /// moves the same ones in the same order), each as [`Self::move_ticket`] would. A move
    /// whose target the rules in force do not have is skipped and named in the outcome.
    fn apply_moves(&mut self, moves: &[PipelineMove]) -> Result<Answer, StoreError> {
        const PAGE: usize = 4096;
        let prefix = keys::ticket("");
        let mut end = prefix.clone();
        // The prefix ends in '/': the next byte bounds everything under it.
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut start = prefix.clone();
        let (mut moved, mut skipped) = (0u64, Vec::new());
        loop {
            let page = self.batch.keys_in_range(&start, &end, PAGE)?;
            for key in &page {
                let Some(mut ticket) = self.batch.get::<Ticket>(key)? else {
                    continue;
                };
                let routing = &ticket.routing;
                let (Some(pipeline), false) = (&routing.pipeline, routing.ticketless) else {
                    continue;
                };
                let Some(to) = PipelineMove::find(moves, pipeline, routing.status.as_deref())
                else {
                    continue;
                };
                let target = (to.to_pipeline.as_str(), to.to_status.as_str());
                match self.relocate(&mut ticket, target, Cause::ConfigMove)? {
                    Ok(_) => moved += 1,
                    Err(refusal) => {
                        skipped.push(json!({ "ticket": ticket.id, "error": refusal.to_string() }))
                    }
                }
            }
            match page.last() {
                Some(key) if page.len() == PAGE => {
                    start = key.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(Ok(json!({ "moved": moved, "skipped": skipped })))
    }

    /// Puts a ticket into `pipeline` at `status` (checked against the rules in force, before
    /// anything changes), with its status event carrying where it was.
    fn relocate(
        &mut self,
        ticket: &mut Ticket,
        (pipeline, status): (&str, &str),
        cause: Cause,
    ) -> Result<Answer, StoreError> {
        let Some(config) = self.rules.pipelines.get(pipeline) else {
            return Ok(Err(Refusal::Invalid(format!(
                "pipeline: unknown pipeline {pipeline:?}"
            ))));
        };
        if !config.statuses.iter().any(|s| s.id == status) {
            let message = format!("status: {status:?} is not a status of pipeline {pipeline:?}");
            return Ok(Err(Refusal::Invalid(message)));
        }
        let routing = &mut ticket.routing;
        let old_pipeline = routing.pipeline.replace(pipeline.to_owned());
        let old_status = routing.status.clone();
        if old_pipeline.as_deref() != Some(pipeline) {
            // A status of another pipeline is never "the same" status.
            routing.status = None;
        }
        let moved = Moved {
            pipeline: old_pipeline,
            status: old_status,
        };
        let changed = self.set_status_from(ticket, status, cause, Some(moved))?;
        self.save_ticket(ticket);
        Ok(Ok(
            json!({ "ticket": ticket.id, "changed": changed, "routing": ticket.routing }),
        ))
    }

    fn set_owner(&mut self, id: &str, owner: Option<&str>) -> Result<Answer, StoreError> {
        let Some(mut ticket) = self.ticket(id)? else {
            return Ok(Err(not_found("ticket", id)));
        };
        if let Some(owner) = owner {
            // A ticket goes only to a user who exists now and holds a seat.
            match self.snapshot(None)?.users.get(owner) {
                None => {
                    return Ok(Err(Refusal::Invalid(format!(
                        "owner: unknown user {owner:?}"
                    ))))
                }
                Some(user) if !user.seat => {
                    return Ok(Err(Refusal::Invalid(format!(
                        "owner: user {owner:?} has no seat"
                    ))))
                }
                Some(_) => {}
            }
        }
        if ticket.routing.open {
            self.count_open(ticket.routing.owner.as_deref(), -1)?;
            self.count_open(owner, 1)?;
        }
        ticket.routing.owner = owner.map(str::to_owned);
        self.save_ticket(&mut ticket);
        let data = TicketAssigned {
            ticket: id.to_owned(),
            assignee: owner.map(str::to_owned),
            rule: AssignmentRule::Control,
            trace: "set through the control API".to_owned(),
        };
        self.emit(id, Some(&ticket.channel), EventData::TicketAssigned(data));
        Ok(Ok(json!({ "ticket": id, "routing": ticket.routing })))
    }

    pub(super) fn conversation_and_ticket(
        &self,
        id: &str,
    ) -> Result<Option<(Conversation, Ticket)>, StoreError> {
        let Some(conversation) = self.batch.get::<Conversation>(&keys::conversation(id))? else {
            return Ok(None);
        };
        let ticket = self.ticket(&conversation.ticket_id)?;
        Ok(ticket.map(|t| (conversation, t)))
    }

    /// Moves every conversation of `merged` onto `survivor`; later replies on either's
    /// threads land on the survivor because the threads now point there.
    fn merge(&mut self, survivor: &str, merged: &str) -> Result<Answer, StoreError> {
        if survivor == merged {
            return Ok(Err(Refusal::Invalid(
                "a ticket cannot be merged into itself".into(),
            )));
        }
        let Some(mut kept) = self.ticket(survivor)? else {
            return Ok(Err(not_found("ticket", survivor)));
        };
        let Some(gone) = self.ticket(merged)? else {
            return Ok(Err(not_found("ticket", merged)));
        };
        for id in &gone.conversations {
            if let Some(mut conversation) =
                self.batch.get::<Conversation>(&keys::conversation(id))?
            {
                conversation.ticket_id = kept.id.clone();
                self.batch.put(keys::conversation(id), &conversation);
            }
            kept.conversations.push(id.clone());
        }
        kept.routing
            .trigger_conversations
            .extend(gone.routing.trigger_conversations.iter().cloned());
        kept.updated_at = self.at;
        if gone.routing.open {
            self.count_open(gone.routing.owner.as_deref(), -1)?;
        }
        self.save_ticket(&mut kept);
        self.drop_ticket_mirror(merged)?;
        let data = TicketMerged {
            ticket: kept.id.clone(),
            merged: merged.to_owned(),
            conversations: kept.conversations.clone(),
        };
        self.emit(&kept.id, Some(&kept.channel), EventData::TicketMerged(data));
        Ok(Ok(
            json!({ "ticket": kept.id, "conversations": kept.conversations }),
        ))
    }

    pub(super) fn delete_with_event(&mut self, ticket: &Ticket) -> Result<Answer, StoreError> {
        self.delete_ticket(ticket)?;
        let data = TicketDeleted {
            ticket: ticket.id.clone(),
            ticket_number: ticket.number,
            conversations: ticket.conversations.clone(),
        };
        self.emit(
            &ticket.id,
            Some(&ticket.channel),
            EventData::TicketDeleted(data),
        );
        Ok(Ok(json!({ "ticket": ticket.id, "deleted": true })))
    }

    /// Purges spam conversations older than the retention. Times come from the record being
    /// applied, so a replay purges at the same point. Returns whether it purged any.
    pub(super) fn purge_expired_spam(&mut self) -> Result<bool, StoreError> {
        let mut list: SpamList = get_or_default(self.batch, &keys::spam_list())?;
        let expired = list
            .iter()
            .take_while(|(at, _)| *at + self.rules.spam_retention <= self.at)
            .count();
        if expired == 0 {
            return Ok(false);
        }
        for (_, id) in list.drain(..expired) {
            let Some((_, mut ticket)) = self.conversation_and_ticket(&id)? else {
                self.forget_conversation(&id)?;
                continue;
            };
            if ticket.conversations.len() <= 1 {
                self.delete_ticket(&ticket)?;
            } else {
                ticket.conversations.retain(|c| c != &id);
                self.save_ticket(&mut ticket);
                self.forget_conversation(&id)?;
            }
        }
        self.batch.put(keys::spam_list(), &list);
        Ok(true)
    }
}
