//! Erasing a contact: its identities, message bodies and stored attachments leave deskgate's
//! state.
//!
//! In the processor step: the identity index entries go, the contact becomes an `erased`
//! tombstone, its conversations lose their thread keys (a phone number, a visitor token) and
//! their thread index entries (a later message from the same address opens a new
//! conversation), its conversation and ticket index entries go, and a pending erasure listing
//! the journal seqs of its messages (and of the agents' replies to it) is written with the
//! step. The processor then lets outbound forget the conversations' reply contexts and
//! outgoing messages ([`crate::outbound::erase`]). After the step is committed and flushed,
//! [`finish_pending`] rewrites those journal records with their bodies, sender and attachments
//! blanked, deletes the attachment blobs, flushes, and only then drops the pending entry; a
//! crash in between repeats it, which is harmless. Redacting after the commit means a replayed
//! step never sees a record blanked under it.
//!
//! Events already in the outbox keep what they said until outbox retention removes them.

use serde::{Deserialize, Serialize};

use crate::conversations::Conversation;
use crate::model::{Contact, OutboundRecord, Record, Sender};
use crate::store::{keys, Blobs, StateBatch, Store, StoreError};

/// Journal records still to redact for one erasure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingErasure {
    pub contact_id: String,
    pub journal_seqs: Vec<u64>,
}

/// What an erasure removed, for the event and the control API's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Erased {
    pub contact_id: String,
    pub conversations: Vec<String>,
    pub messages: usize,
}

/// Erases a live contact inside the step (`seq` is the control record's journal seq).
pub fn erase(
    batch: &mut StateBatch<'_>,
    mut contact: Contact,
    seq: u64,
) -> Result<Erased, StoreError> {
    for identity in std::mem::take(&mut contact.identities) {
        batch.identity_remove(&identity.index_key())?;
    }
    let prefix = keys::contact_conversations(&contact.id);
    let mut conversations = Vec::new();
    let mut journal_seqs = Vec::new();
    for key in batch.keys_with_prefix(&prefix)? {
        let conversation = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        forget_thread(batch, &conversation)?;
        let messages = keys::conversation_messages(&conversation);
        for message in batch.keys_with_prefix(&messages)? {
            journal_seqs.push(keys::be_u64(&message[messages.len()..]));
        }
        batch.remove(key);
        conversations.push(conversation);
    }
    // Messages held until a consent that never came.
    journal_seqs.extend(super::consent::drop_held(batch, &contact.id)?);
    // Its tickets stay (with the erased contact's id) but leave its index: an erased contact is
    // never merged, which is all the index is for.
    for key in batch.keys_with_prefix(&keys::contact_tickets(&contact.id))? {
        batch.remove(key);
    }
    contact.name = None;
    contact.locale = None;
    contact.owner = None;
    contact.spellings.clear();
    contact.consent.clear();
    contact.erased = true;
    batch.put(keys::contact(&contact.id), &contact);
    let erased = Erased {
        contact_id: contact.id.clone(),
        conversations,
        messages: journal_seqs.len(),
    };
    let pending = PendingErasure {
        contact_id: contact.id,
        journal_seqs,
    };
    batch.put(keys::erase_pending(seq), &pending);
    Ok(erased)
}

/// Unlinks a conversation from its thread key, which names the customer on some channels.
fn forget_thread(batch: &mut StateBatch<'_>, conversation_id: &str) -> Result<(), StoreError> {
    let key = keys::conversation(conversation_id);
    let Some(mut conversation) = batch.get::<Conversation>(&key)? else {
        return Ok(());
    };
    let thread = keys::thread(&conversation.channel, &conversation.thread_key);
    if batch.get::<String>(&thread)?.as_deref() == Some(conversation_id) {
        batch.remove(thread);
    }
    conversation.thread_key.clear();
    batch.put(key, &conversation);
    // The Message-IDs its mails are and refer to name people too (and would thread a later
    // mail of the same thread into the erased conversation).
    crate::conversations::forget_email_ids(batch, conversation_id)?;
    Ok(())
}

/// Blanks a journal record's personal content, keeping what deduplication and ordering need.
/// Returns the attachment ids it dropped.
pub fn redact(record: &mut Record) -> Vec<String> {
    match record {
        Record::Inbound(inbound) => {
            inbound.sender = Sender::default();
            inbound.subject = None;
            inbound.text = String::new();
            inbound.html = None;
            inbound.extra = serde_json::Map::new();
            inbound.flags.original_sender = None;
            if let Some(email) = inbound.email.as_mut() {
                email.reply_to = None;
            }
            std::mem::take(&mut inbound.attachments)
                .into_iter()
                .map(|a| a.id)
                .collect()
        }
        // Delivery receipts name the customer's channel identity: blank it too.
        Record::Event(event) => {
            event.sender = None;
            event.detail = serde_json::Value::Null;
            Vec::new()
        }
        // An agent's reply to the customer, an automatic mail about them.
        Record::Outbound(outbound) => match outbound.as_mut() {
            OutboundRecord::Reply(reply) => {
                reply.text = String::new();
                reply.html = None;
                std::mem::take(&mut reply.attachments)
                    .into_iter()
                    .map(|a| a.id)
                    .collect()
            }
            OutboundRecord::Automatic(automatic) => {
                automatic.to = None;
                automatic.fields = serde_json::Map::new();
                Vec::new()
            }
            OutboundRecord::Outcome(_) => Vec::new(),
        },
        Record::Quarantine(_)
        | Record::Contact(_)
        | Record::Control(_)
        | Record::SinkDeadLettered(_)
        | Record::SinkDisabled(_) => Vec::new(),
    }
}

/// Carries out committed erasures on the journal and the blobs. Idempotent.
pub fn finish_pending(store: &Store, blobs: Option<&Blobs>) -> Result<usize, StoreError> {
    let pending = store.state_scan::<PendingErasure>(keys::ERASE_PENDING, None, 16)?;
    if pending.is_empty() {
        return Ok(0);
    }
    for (_, erasure) in &pending {
        for &seq in &erasure.journal_seqs {
            let Some(mut record) = store.journal_get(seq)? else {
                continue;
            };
            let attachments = redact(&mut record);
            store.journal_replace(seq, &record)?;
            for id in attachments {
                if let Some(blobs) = blobs {
                    if let Err(error) = blobs.delete(&id) {
                        tracing::warn!(%error, blob = id, "could not delete an erased attachment");
                    }
                }
            }
        }
    }
    store.flush()?;
    let mut done = store.state_batch();
    for (key, _) in &pending {
        done.remove(key.clone());
    }
    done.commit()?;
    store.flush()?;
    Ok(pending.len())
}
