//! A contact's consent to a channel's data-protection text (GDPR), and the messages held until
//! they give it.
//!
//! - [`record`] puts the consent on the contact and announces it in a `deskgate.contact.updated`
//!   event (`data.consent`; the contact in every `contact.*` event shows it too).
//! - On an explicit-consent channel the processor [`hold`]s a visitor's messages under
//!   `consent_held/{contact}\0{channel}\0{seq}` until they agree, then [`take_held`] gives them
//!   back in journal order. The taps' journal records are remembered too ([`remember_tap`]):
//!   they join no conversation. A merge moves both ([`move_held`]) and an erasure drops both
//!   ([`drop_held`]) and redacts their records, with the consents.

use super::announce::Announcer;
use crate::events::data::{ContactUpdated, EventData};
use crate::model::{Consent, Contact, Inbound, MessageKind};
use crate::store::{keys, StateBatch, StoreError};

/// Records `consent` on `contact` for `channel`, and announces it.
pub fn record(
    batch: &mut StateBatch<'_>,
    announce: &Announcer<'_>,
    contact: &mut Contact,
    channel: &str,
    consent: Consent,
) -> Result<(), StoreError> {
    contact.consent.insert(channel.to_owned(), consent.clone());
    batch.put(keys::contact(&contact.id), contact);
    let data = ContactUpdated {
        contact: contact.clone(),
        added_identities: None,
        name_added: None,
        owner: None,
        consent: Some(consent),
    };
    announce.push(batch, &contact.id, EventData::ContactUpdated(data))
}

/// Keeps a message (journal `seq`) of `contact` on `channel` until they consent. Returns
/// whether it is the first one from the contact held there (the page's own echoed messages are
/// kept too, but are not the contact's).
pub fn hold(
    batch: &mut StateBatch<'_>,
    contact_id: &str,
    seq: u64,
    inbound: &Inbound,
) -> Result<bool, StoreError> {
    let mut first = inbound.kind != MessageKind::Echo;
    for key in batch.keys_with_prefix(&keys::consent_held_on(contact_id, &inbound.channel))? {
        let held = batch.get::<Inbound>(&key)?;
        if held.is_some_and(|held| held.kind != MessageKind::Echo) {
            first = false;
            break;
        }
    }
    let key = keys::consent_held_message(contact_id, &inbound.channel, seq);
    batch.put(key, inbound);
    Ok(first)
}

/// The messages held for `contact` on `channel`, in journal order, removed from the hold.
pub fn take_held(
    batch: &mut StateBatch<'_>,
    contact_id: &str,
    channel: &str,
) -> Result<Vec<(u64, Inbound)>, StoreError> {
    let prefix = keys::consent_held_on(contact_id, channel);
    let mut held = Vec::new();
    for key in batch.keys_with_prefix(&prefix)? {
        let seq = keys::be_u64(&key[prefix.len()..]);
        if let Some(inbound) = batch.get::<Inbound>(&key)? {
            held.push((seq, inbound));
        }
        batch.remove(key);
    }
    held.sort_by_key(|(seq, _)| *seq);
    Ok(held)
}

/// Remembers the journal record of a consent tap (a message that joins no conversation), so
/// that an erasure of the contact redacts it too.
pub fn remember_tap(batch: &mut StateBatch<'_>, contact_id: &str, seq: u64) {
    batch.put(keys::consent_tap(contact_id, seq), &());
}

/// Moves the messages held for an absorbed contact, and its taps, onto its survivor.
pub fn move_held(batch: &mut StateBatch<'_>, from: &str, to: &str) -> Result<(), StoreError> {
    for (prefix, target) in [
        (keys::consent_held(from), keys::consent_held(to)),
        (keys::consent_taps(from), keys::consent_taps(to)),
    ] {
        for key in batch.keys_with_prefix(&prefix)? {
            let Some(raw) = batch.get_raw(&key)? else {
                continue;
            };
            let mut moved = target.clone();
            moved.extend_from_slice(&key[prefix.len()..]);
            batch.put_raw(moved, raw);
            batch.remove(key);
        }
    }
    Ok(())
}

/// Drops everything held for an erased contact, and its taps; returns the journal seqs of
/// those records, which the erasure redacts too.
pub fn drop_held(batch: &mut StateBatch<'_>, contact_id: &str) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::new();
    for prefix in [
        keys::consent_held(contact_id),
        keys::consent_taps(contact_id),
    ] {
        for key in batch.keys_with_prefix(&prefix)? {
            seqs.push(keys::be_u64(&key[key.len() - 8..]));
            batch.remove(key);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}
