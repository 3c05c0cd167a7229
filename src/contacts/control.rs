//! Applying the control API's contact requests inside the processor, in journal order.
//!
//! Each request leaves its outcome under `control/{seq}` ([`ControlOutcome`](Outcome)), which
//! the waiting handler answers with. Refusals (an unknown contact, a merge of a contact with itself) are
//! outcomes, not errors: the record is applied and nothing else changes.

use serde_json::json;

use super::announce::Announcer;
use super::erase::{self, Erased};
use super::{follow, merge};
use crate::events::data::{ContactErased, ContactUpdated, EventData};
use crate::model::{Contact, ContactCommand, ControlOutcome as Outcome, Refusal};
use crate::store::{keys, StateBatch, StoreError};

/// What applying a request did: its outcome, and for an erasure what was erased, which the
/// processor passes on to the state contacts do not own (outgoing messages).
#[derive(Debug)]
pub struct Applied {
    pub outcome: Outcome,
    pub erased: Option<Erased>,
}

/// Applies one request and records its outcome.
pub fn apply(
    batch: &mut StateBatch<'_>,
    announce: &Announcer<'_>,
    seq: u64,
    command: &ContactCommand,
) -> Result<Applied, StoreError> {
    let mut erased = None;
    let outcome = match command {
        ContactCommand::SetOwner { contact_id, owner } => match live(batch, contact_id)? {
            Ok(mut contact) => {
                contact.owner = owner.clone();
                batch.put(keys::contact(&contact.id), &contact);
                let data = ContactUpdated {
                    contact: contact.clone(),
                    added_identities: None,
                    name_added: None,
                    owner: Some(owner.clone()),
                    consent: None,
                };
                announce.push(batch, &contact.id, EventData::ContactUpdated(data))?;
                Outcome::Done(json!({ "contact": contact }))
            }
            Err(refused) => refused,
        },
        ContactCommand::Merge { into, from } => manual_merge(batch, announce, into, from)?,
        ContactCommand::Erase { contact_id } => match live(batch, contact_id)? {
            Ok(contact) => {
                let done = erase::erase(batch, contact, seq)?;
                let data = ContactErased {
                    contact_id: done.contact_id.clone(),
                    conversations: done.conversations.clone(),
                    messages: done.messages,
                };
                announce.push(batch, &done.contact_id, EventData::ContactErased(data))?;
                let outcome = Outcome::Done(json!({ "erased": done }));
                erased = Some(done);
                outcome
            }
            Err(refused) => refused,
        },
    };
    batch.put(keys::control_outcome(seq), &outcome);
    Ok(Applied { outcome, erased })
}

fn manual_merge(
    batch: &mut StateBatch<'_>,
    announce: &Announcer<'_>,
    into: &str,
    from: &str,
) -> Result<Outcome, StoreError> {
    let mut survivor = match live(batch, into)? {
        Ok(contact) => contact,
        Err(refused) => return Ok(refused),
    };
    let absorbed = match live(batch, from)? {
        Ok(contact) => contact,
        Err(refused) => return Ok(refused),
    };
    if survivor.id == absorbed.id {
        return Ok(Outcome::Refused(Refusal::Conflict(format!(
            "{from} and {into} are already the same contact ({})",
            survivor.id
        ))));
    }
    let absorbed_id = absorbed.id.clone();
    merge::absorb(batch, &mut survivor, absorbed)?;
    announce.merged(batch, &survivor, std::slice::from_ref(&absorbed_id), true)?;
    Ok(Outcome::Done(
        json!({ "contact": survivor, "absorbed": [absorbed_id] }),
    ))
}

/// The live contact an id leads to, or the refusal to answer with.
fn live(batch: &StateBatch<'_>, id: &str) -> Result<Result<Contact, Outcome>, StoreError> {
    Ok(match follow(batch, id)? {
        Some(contact) if contact.is_live() => Ok(contact),
        Some(_) => Err(Outcome::Refused(Refusal::NotFound(format!(
            "contact {id} was erased"
        )))),
        None => Err(Outcome::Refused(Refusal::NotFound(format!(
            "no contact {id}"
        )))),
    })
}
