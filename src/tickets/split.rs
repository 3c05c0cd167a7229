//! Splits made through the control API: a whole conversation moves to a new ticket, or chosen
//! mails of a conversation (with every mail that replies to them) move into a new conversation
//! on a new ticket. Both announce `deskgate.ticket.split`; the new ticket takes the old one's
//! pipeline and owner, and its status (the pipeline's first open status when the old ticket is
//! closed: a split is work to do).
//!
//! Which mails go and how the Message-ID index follows them is `conversations::split`; this
//! module checks the request, builds the new conversation and ticket, and keeps the mirror's
//! bookkeeping (counts, reply context, ticket state) right on both sides.

use std::collections::{BTreeSet, HashMap};

use serde_json::json;

use super::control::{not_found, Answer, Refusal};
use super::Step;
use crate::conversations::split::{self, MessageLinks};
use crate::conversations::Conversation;
use crate::events::data::{EventData, TicketSplit};
use crate::model::{Routing, Ticket};
use crate::outbound::ReplyContext;
use crate::store::{keys, StoreError};

/// The mails of a conversation (with their links) and which of them move.
struct Choice {
    mails: Vec<(u64, MessageLinks)>,
    moved: BTreeSet<u64>,
}

impl Choice {
    fn moving(&self) -> impl Iterator<Item = &(u64, MessageLinks)> {
        self.mails
            .iter()
            .filter(|(seq, _)| self.moved.contains(seq))
    }

    fn staying(&self) -> impl Iterator<Item = &(u64, MessageLinks)> {
        self.mails
            .iter()
            .filter(|(seq, _)| !self.moved.contains(seq))
    }
}

impl Step<'_, '_> {
    /// Splits conversation `id`: the whole of it, or the mails named by `messages` (the ids
    /// the message events gave them) and their replies.
    pub(super) fn split(
        &mut self,
        id: &str,
        messages: Option<&[String]>,
    ) -> Result<Answer, StoreError> {
        match messages {
            None => self.split_conversation(id),
            Some(messages) => self.split_messages(id, messages),
        }
    }

    /// Moves one conversation (its thread with it) to a new ticket.
    fn split_conversation(&mut self, id: &str) -> Result<Answer, StoreError> {
        let Some((mut conversation, ticket)) = self.conversation_and_ticket(id)? else {
            return Ok(Err(not_found("conversation", id)));
        };
        if ticket.conversations.len() < 2 {
            let message = format!("ticket {:?} has only this conversation", ticket.id);
            return Ok(Err(Refusal::Conflict(message)));
        }
        let (mut new, mut old) = self.detach(&mut conversation, &ticket)?;
        old.routing.trigger_conversations.retain(|c| c != id);
        self.save_ticket(&mut old);
        let routing = self.open_split_ticket(&ticket.routing, &mut new, id)?;
        let data = TicketSplit {
            ticket: ticket.id.clone(),
            new_ticket: new.id.clone(),
            new_ticket_number: new.number,
            conversation: id.to_owned(),
            from_conversation: None,
            messages: None,
            routing,
        };
        self.emit(
            &ticket.id,
            Some(&ticket.channel),
            EventData::TicketSplit(data),
        );
        Ok(Ok(json!({ "ticket": ticket.id, "new_ticket": new.id })))
    }

    /// Moves the chosen mails of conversation `id` and their replies into a new conversation
    /// on a new ticket.
    fn split_messages(&mut self, id: &str, chosen: &[String]) -> Result<Answer, StoreError> {
        let Some((mut old, ticket)) = self.conversation_and_ticket(id)? else {
            return Ok(Err(not_found("conversation", id)));
        };
        let choice = match self.choose(id, chosen)? {
            Ok(choice) => choice,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mut new = self.split_off_conversation(&old, &choice)?;
        let (mut new_ticket, _) = self.detach(&mut new, &ticket)?;
        split::move_mails(self.batch, (&old, &new), &choice.mails, &choice.moved)?;
        old.messages = old.messages.saturating_sub(choice.moved.len() as u64);
        let moved_last = choice.moving().map(|(_, m)| m.received_at).max();
        let staying_last = choice.staying().map(|(_, m)| m.received_at).max();
        if let (Some(moved_last), Some(staying_last)) = (moved_last, staying_last) {
            if moved_last >= old.last_message_at {
                old.last_message_at = staying_last;
            }
        }
        self.batch.put(keys::conversation(&old.id), &old);
        self.batch
            .put(keys::contact_conversation(&new.contact_id, &new.id), &());
        self.split_reply_context(&old, &new, &choice)?;
        let mut bookkeeping = self.conversation_state(&old.id)?;
        // The new conversation's first mail is not the forward the old one may have started
        // with, and the new ticket is open; a spam mark stays with the customer's mails.
        bookkeeping.closed = false;
        bookkeeping.from_forward = false;
        self.save_conversation_state(&new.id, &bookkeeping);
        let routing = self.open_split_ticket(&ticket.routing, &mut new_ticket, &new.id)?;
        let messages: Vec<String> = choice
            .moving()
            .map(|(seq, _)| self.minter.message_id(*seq))
            .collect();
        let data = TicketSplit {
            ticket: ticket.id.clone(),
            new_ticket: new_ticket.id.clone(),
            new_ticket_number: new_ticket.number,
            conversation: new.id.clone(),
            from_conversation: Some(old.id.clone()),
            messages: Some(messages.clone()),
            routing,
        };
        self.emit(
            &ticket.id,
            Some(&ticket.channel),
            EventData::TicketSplit(data),
        );
        Ok(Ok(
            json!({ "ticket": ticket.id, "new_ticket": new_ticket.id,
            "conversation": new.id, "messages": messages }),
        ))
    }

    /// The mails that move, or why none can.
    fn choose(
        &mut self,
        id: &str,
        chosen: &[String],
    ) -> Result<Result<Choice, Refusal>, StoreError> {
        if chosen.is_empty() {
            let message = "messages: name at least one message (send no body to split the whole \
                           conversation)";
            return Ok(Err(Refusal::Invalid(message.to_owned())));
        }
        // Message ids derive from journal seqs: name every record of the conversation, and
        // every mail whose links outlived its record (journal retention).
        let prefix = keys::conversation_messages(id);
        let mails = split::links_of(self.batch, id)?;
        let mut by_id: HashMap<String, u64> = HashMap::new();
        for key in self.batch.keys_with_prefix(&prefix)? {
            let seq = keys::be_u64(&key[prefix.len()..]);
            by_id.insert(self.minter.message_id(seq), seq);
        }
        for (seq, _) in &mails {
            by_id.insert(self.minter.message_id(*seq), *seq);
        }
        let (mut picked, mut unknown, mut unlinked) = (BTreeSet::new(), Vec::new(), Vec::new());
        for message in chosen {
            match by_id.get(message) {
                None => unknown.push(message),
                Some(seq) if mails.iter().any(|(s, _)| s == seq) => {
                    picked.insert(*seq);
                }
                Some(_) => unlinked.push(message),
            }
        }
        if !unknown.is_empty() {
            let message = format!("messages: {unknown:?} are not messages of conversation {id:?}");
            return Ok(Err(Refusal::Invalid(message)));
        }
        if !unlinked.is_empty() {
            let message = format!(
                "messages: {unlinked:?} have no reply identity deskgate knows (not customer \
                 mail, or threaded before deskgate kept reply links): split the whole \
                 conversation instead"
            );
            return Ok(Err(Refusal::Conflict(message)));
        }
        let moved = split::with_replies(&mails, &picked);
        if moved.len() == mails.len() {
            let message = format!(
                "every mail of conversation {id:?} replies to the chosen messages or is one: \
                 nothing would stay (split the whole conversation instead)"
            );
            return Ok(Err(Refusal::Conflict(message)));
        }
        Ok(Ok(Choice { mails, moved }))
    }

    /// The new conversation for the moving mails (not yet on a ticket): its thread starts at
    /// the first of them.
    fn split_off_conversation(
        &mut self,
        old: &Conversation,
        choice: &Choice,
    ) -> Result<Conversation, StoreError> {
        let id = self.minter.mint(self.batch, "conversation")?;
        let mut moving = choice.moving().map(|(_, m)| m);
        // `choose` refuses an empty choice, and what it picks moves.
        let first = moving.next().expect("a split moves at least one mail");
        let last_message_at = moving.fold(first.received_at, |t, m| t.max(m.received_at));
        Ok(Conversation {
            id,
            channel: old.channel.clone(),
            thread_key: first.message_id.clone(),
            contact_id: old.contact_id.clone(),
            ticket_id: old.ticket_id.clone(),
            created_at: first.received_at,
            last_message_at,
            messages: choice.moved.len() as u64,
            reply_window_ends_at: old.reply_window_ends_at,
            human_agent_window_ends_at: old.human_agent_window_ends_at,
            split_from: Some(split::family(old).to_owned()),
        })
    }

    /// Gives the new conversation what an agent's reply on it needs (the customer's address,
    /// the last mail to answer), and the old one its last staying mail when its last mail moved.
    fn split_reply_context(
        &mut self,
        old: &Conversation,
        new: &Conversation,
        choice: &Choice,
    ) -> Result<(), StoreError> {
        let key = keys::reply_context(&old.id);
        let Some(mut context) = self.batch.get::<ReplyContext>(&key)? else {
            return Ok(());
        };
        let answer = |context: &mut ReplyContext, last: Option<&(u64, MessageLinks)>| {
            if let Some((_, mail)) = last {
                context.last_message_id = Some(mail.message_id.clone());
                context.references = mail.references.clone();
            }
        };
        let moved = choice.moved.len() as u64;
        let mut split_off = context.clone();
        split_off.conversation_id = new.id.clone();
        split_off.ticket_id = new.ticket_id.clone();
        split_off.customer_messages = moved;
        answer(&mut split_off, choice.moving().last());
        self.batch.put(keys::reply_context(&new.id), &split_off);
        context.customer_messages = context.customer_messages.saturating_sub(moved);
        let moved_ids: Vec<&str> = choice
            .moving()
            .map(|(_, m)| m.message_id.as_str())
            .collect();
        if moved_ids.contains(&context.last_message_id.as_deref().unwrap_or_default()) {
            answer(&mut context, choice.staying().last());
        }
        self.batch.put(key, &context);
        Ok(())
    }

    /// Routes and saves `new`, split off a ticket routed as `old`, whose conversation
    /// `conversation` is its thread for status triggers; returns its routing.
    fn open_split_ticket(
        &mut self,
        old: &Routing,
        new: &mut Ticket,
        conversation: &str,
    ) -> Result<Routing, StoreError> {
        let first_open = self
            .pipeline(old)
            .and_then(|p| p.statuses.iter().find(|s| s.open))
            .map(|s| s.id.clone());
        new.routing = Routing {
            status: if old.open {
                old.status.clone()
            } else {
                first_open
            },
            open: true,
            trigger_conversations: vec![conversation.to_owned()],
            reopened: false,
            ..old.clone()
        };
        self.count_open(new.routing.owner.as_deref(), 1)?;
        self.save_ticket(new);
        Ok(new.routing.clone())
    }
}
