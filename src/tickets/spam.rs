//! Spam, both ways. Marking a conversation flags its sender (their later messages carry
//! `spam: true` and are never assigned or acknowledged) and queues the conversation for the
//! purge after `routing.spam_retention_days`; when every conversation of its ticket is spam the
//! ticket is deleted, as the store deletes it. Unmarking (a conversation or a contact) lifts the
//! sender's flag and the spam mark of each of the sender's conversations still kept, each with
//! its event.

use serde_json::json;

use super::control::{not_found, Answer};
use super::state::{get_or_default, SpamList};
use super::Step;
use crate::conversations::Conversation;
use crate::events::data::{ContactSpamUndone, ConversationSpam, ConversationSpamUndone, EventData};
use crate::store::{keys, StoreError};

impl Step<'_, '_> {
    pub(super) fn mark_spam(&mut self, id: &str) -> Result<Answer, StoreError> {
        let Some((conversation, ticket)) = self.conversation_and_ticket(id)? else {
            return Ok(Err(not_found("conversation", id)));
        };
        let mut bookkeeping = self.conversation_state(id)?;
        let purge_after = self.at + self.rules.spam_retention;
        if bookkeeping.spam {
            return Ok(Ok(
                json!({ "conversation": id, "spam": true, "changed": false }),
            ));
        }
        bookkeeping.spam = true;
        self.save_conversation_state(id, &bookkeeping);
        self.batch
            .put(keys::spam_contact(&conversation.contact_id), &self.at);
        let mut list: SpamList = get_or_default(self.batch, &keys::spam_list())?;
        list.push((self.at, id.to_owned()));
        self.batch.put(keys::spam_list(), &list);
        let data = ConversationSpam {
            ticket: ticket.id.clone(),
            conversation: id.to_owned(),
            contact: conversation.contact_id.clone(),
            purge_after,
        };
        self.emit(
            &ticket.id,
            Some(&ticket.channel),
            EventData::ConversationSpam(data),
        );
        let mut all_spam = true;
        for other in &ticket.conversations {
            all_spam &= self.conversation_state(other)?.spam;
        }
        if all_spam {
            // Nothing of the ticket is real: it goes, as the help desk deletes it.
            let _deleted: Answer = self.delete_with_event(&ticket)?;
        }
        Ok(Ok(json!({
            "conversation": id,
            "spam": true,
            "purge_after": purge_after,
            "ticket_deleted": all_spam,
        })))
    }

    pub(super) fn unmark_spam_conversation(&mut self, id: &str) -> Result<Answer, StoreError> {
        let Some((conversation, _)) = self.conversation_and_ticket(id)? else {
            return Ok(Err(not_found("conversation", id)));
        };
        let unmarked = self.lift_spam(&conversation.contact_id)?;
        Ok(Ok(json!({
            "conversation": id,
            "contact": conversation.contact_id,
            "spam": false,
            "unmarked": unmarked,
        })))
    }

    pub(super) fn unmark_spam_contact(&mut self, contact: &str) -> Result<Answer, StoreError> {
        if !self.batch.contains(&keys::contact(contact))? {
            return Ok(Err(not_found("contact", contact)));
        }
        let unmarked = self.lift_spam(contact)?;
        Ok(Ok(
            json!({ "contact": contact, "spam": false, "unmarked": unmarked }),
        ))
    }

    /// Lifts a contact's spam flag and the mark of each of its spam conversations still kept;
    /// returns those conversations. Emits one event per conversation and one for the contact
    /// when it was flagged.
    fn lift_spam(&mut self, contact: &str) -> Result<Vec<String>, StoreError> {
        let flagged = self.batch.contains(&keys::spam_contact(contact))?;
        self.batch.remove(keys::spam_contact(contact));
        let list: SpamList = get_or_default(self.batch, &keys::spam_list())?;
        let mut kept = SpamList::new();
        let mut unmarked = Vec::new();
        for (at, id) in list {
            let conversation = self.batch.get::<Conversation>(&keys::conversation(&id))?;
            match conversation {
                Some(c) if c.contact_id == contact => {
                    let mut bookkeeping = self.conversation_state(&id)?;
                    bookkeeping.spam = false;
                    self.save_conversation_state(&id, &bookkeeping);
                    let data = ConversationSpamUndone {
                        ticket: c.ticket_id.clone(),
                        conversation: id.clone(),
                        contact: contact.to_owned(),
                    };
                    self.emit(
                        &c.ticket_id,
                        Some(&c.channel),
                        EventData::ConversationSpamUndone(data),
                    );
                    unmarked.push(id);
                }
                _ => kept.push((at, id)),
            }
        }
        self.batch.put(keys::spam_list(), &kept);
        if flagged || !unmarked.is_empty() {
            let data = ContactSpamUndone {
                contact: contact.to_owned(),
                conversations: unmarked.clone(),
            };
            self.emit(contact, None, EventData::ContactSpamUndone(data));
        }
        Ok(unmarked)
    }
}
