//! What an erased contact leaves in outbound's state: the reply context of each of its
//! conversations (the customer's address, name and platform id), the chat messages kept for
//! their transcripts, and the outgoing messages on them (recipient and content). Also what a
//! forgotten conversation leaves there ([`drop_conversation`]: a deleted ticket, purged spam,
//! a closed ticket past retention).
//!
//! Called by the processor in the step that erases the contact. Outgoing messages keep their
//! ids, purpose and status so the ticket store's references stay valid; their payloads are
//! blanked, and those still waiting to be sent are suppressed instead (the person asked to be
//! forgotten). The journal records of the requests are indexed with the conversation's
//! messages, so the contact's erasure redacts them too (`contacts::erase::redact`).

use super::{ItemStatus, OutgoingItem, Payload};
use crate::store::{keys, StateBatch, StoreError};

/// Why an outgoing message that was still pending is not sent.
pub const ERASED: &str = "contact erased";

/// Forgets what outbound holds about these conversations' customer. Returns how many outgoing
/// messages it blanked.
pub fn forget_conversations(
    batch: &mut StateBatch<'_>,
    conversations: &[String],
) -> Result<usize, StoreError> {
    let mut blanked = 0;
    for conversation in conversations {
        batch.remove(keys::reply_context(conversation));
        super::transcript::drop_kept(batch, conversation)?;
        let prefix = keys::conversation_outgoing(conversation);
        for key in batch.keys_with_prefix(&prefix)? {
            let item_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let Some(mut item) = batch.get::<OutgoingItem>(&keys::outgoing(&item_id))? else {
                continue;
            };
            forget(batch, &mut item);
            batch.put(keys::outgoing(&item.id), &item);
            blanked += 1;
        }
    }
    Ok(blanked)
}

/// Removes what outbound keeps about a conversation that deskgate forgets: its reply context,
/// its Message-ID counter, what is kept for its transcript, and its outgoing messages that are
/// done (sent, failed or suppressed). One still pending or in flight stays, so the sender finishes it and records
/// the outcome; only its place in the conversation's index goes.
pub fn drop_conversation(batch: &mut StateBatch<'_>, conversation: &str) -> Result<(), StoreError> {
    batch.remove(keys::reply_context(conversation));
    batch.remove(keys::message_id_counter(conversation));
    super::transcript::drop_kept(batch, conversation)?;
    let prefix = keys::conversation_outgoing(conversation);
    for key in batch.keys_with_prefix(&prefix)? {
        let item_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let done = batch
            .get::<OutgoingItem>(&keys::outgoing(&item_id))?
            .is_some_and(|item| !matches!(item.status, ItemStatus::Pending | ItemStatus::Sending));
        if done {
            batch.remove(keys::outgoing(&item_id));
        }
        batch.remove(key);
    }
    Ok(())
}

fn forget(batch: &mut StateBatch<'_>, item: &mut OutgoingItem) {
    item.payload.blank();
    if matches!(item.status, ItemStatus::Pending | ItemStatus::Sending) {
        // An attempt in flight may still land; its outcome then records what happened.
        batch.remove(keys::outgoing_pending(item.queue_seq));
        item.status = ItemStatus::Suppressed {
            reason: ERASED.to_owned(),
        };
    }
}

impl Payload {
    /// Blanks who it goes to and what it says, keeping how it goes.
    pub fn blank(&mut self) {
        match self {
            Payload::Email(mail) => {
                mail.to.clear();
                mail.subject.clear();
                mail.text.clear();
                mail.html = None;
                mail.attachments.clear();
            }
            Payload::Messenger { psid, text, .. } => {
                psid.clear();
                text.clear();
            }
            Payload::Whatsapp { to, text, .. } => {
                to.clear();
                text.clear();
            }
        }
    }
}
