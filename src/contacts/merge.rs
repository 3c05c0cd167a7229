//! Absorbing one contact into another: identities, conversations and tickets move to the
//! survivor; the absorbed contact stays as a tombstone pointing at it, so its old id still
//! resolves.
//!
//! Tickets move by the contact's index of tickets (`keys::contact_tickets`), not by its
//! conversations: a ticket keeps its contact when a ticket merge brings it another contact's
//! conversation or a split takes its own away, so a ticket of the absorbed contact may hold
//! none of its conversations.

use crate::conversations::Conversation;
use crate::model::{Contact, Ticket};
use crate::store::{keys, StateBatch, StoreError};

/// Moves everything of `absorbed` onto `survivor` and writes both. The survivor keeps its own
/// name, locale and owner when it has them.
pub fn absorb(
    batch: &mut StateBatch<'_>,
    survivor: &mut Contact,
    mut absorbed: Contact,
) -> Result<(), StoreError> {
    let spellings = std::mem::take(&mut absorbed.spellings);
    for identity in std::mem::take(&mut absorbed.identities) {
        batch.identity_put(&identity.index_key(), &survivor.id)?;
        if !survivor.identities.contains(&identity) {
            survivor.attach(identity, &spellings);
        }
    }
    if survivor.name.is_none() {
        survivor.name = absorbed.name.take();
    }
    if survivor.owner.is_none() {
        survivor.owner = absorbed.owner.take();
    }
    if survivor.locale.is_none() {
        survivor.locale = absorbed.locale.take();
    }
    // Per channel, the consent to the newer text.
    for (channel, consent) in std::mem::take(&mut absorbed.consent) {
        let held = survivor.consent.get(&channel);
        if held.is_none_or(|c| c.version < consent.version) {
            survivor.consent.insert(channel, consent);
        }
    }
    super::consent::move_held(batch, &absorbed.id, &survivor.id)?;
    let prefix = keys::contact_conversations(&absorbed.id);
    for key in batch.keys_with_prefix(&prefix)? {
        let conversation_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        repoint(batch, &conversation_id, &absorbed.id, &survivor.id)?;
        batch.remove(key);
        batch.put(
            keys::contact_conversation(&survivor.id, &conversation_id),
            &(),
        );
    }
    let prefix = keys::contact_tickets(&absorbed.id);
    for key in batch.keys_with_prefix(&prefix)? {
        let ticket_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let ticket_key = keys::ticket(&ticket_id);
        if let Some(mut ticket) = batch.get::<Ticket>(&ticket_key)? {
            ticket.contact_id = survivor.id.clone();
            batch.put(ticket_key, &ticket);
        }
        batch.remove(key);
        batch.put(keys::contact_ticket(&survivor.id, &ticket_id), &());
    }
    absorbed.merged_into = Some(survivor.id.clone());
    absorbed.name = None;
    absorbed.locale = None;
    absorbed.owner = None;
    batch.put(keys::contact(&absorbed.id), &absorbed);
    batch.put(keys::contact(&survivor.id), survivor);
    Ok(())
}

/// Points a conversation of the absorbed contact at the survivor.
fn repoint(
    batch: &mut StateBatch<'_>,
    conversation_id: &str,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    let key = keys::conversation(conversation_id);
    let Some(mut conversation) = batch.get::<Conversation>(&key)? else {
        return Ok(());
    };
    if conversation.contact_id == from {
        conversation.contact_id = to.to_owned();
        batch.put(key, &conversation);
    }
    Ok(())
}
