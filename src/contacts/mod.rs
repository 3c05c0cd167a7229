//! Contacts: recognising the customer behind a message from the identities it carries,
//! merging duplicates, and the control requests about contacts (owner, merge, erasure).
//!
//! Everything lives in the state store under indexes, never in a map in memory, so resident
//! memory does not grow with the number of contacts and every lookup is one B-tree search (plus
//! a binary search inside an identity bucket):
//! - `contact/{id}` → [`Contact`] (a plain type of the model: events show it whole; absorbed
//!   contacts stay as tombstones with `merged_into`, so an old id still resolves; erased ones
//!   keep only the `erased` mark);
//! - the identity index: the normalised identity (see [`crate::identity`]) → contact
//!   id, packed into a fixed number of buckets by the store so that memory stays flat;
//! - `contact_conv/{contact}\0{conversation}` → the contact's conversations, re-pointed by a
//!   merge;
//! - `contact_ticket/{contact}\0{ticket}` → the tickets whose contact it is, moved by a merge
//!   (built once for a state from before it: [`ticket_index`]);
//! - `conv_msg/{conversation}\0{seq}` → the journal records of a conversation, for erasure.
//!
//! - `consent_held/{contact}\0{channel}\0{seq}` → messages held until the contact consents.
//!
//! Files: [`resolve`](mod@resolve) (message → contact, the conflict guard), [`merge`] (absorbing a contact),
//! [`erase`] (erasure and the redaction of journal bodies), [`control`] (applying control
//! records), [`announce`] (the events each outcome emits), [`consent`] (GDPR consent and held messages), [`ticket_index`] (building the index
//! of tickets by contact once).

pub mod announce;
pub mod consent;
pub mod control;
pub mod erase;
pub mod merge;
pub mod participants;
pub mod resolve;
pub mod ticket_index;

use std::collections::BTreeMap;

use crate::model::{Contact, Identity};
use crate::store::{keys, StateBatch, Store, StoreError};

pub use resolve::{resolve, Resolution};

/// What resolving adds to the [`Contact`] record (a plain type of the model).
impl Contact {
    /// Attaches an identity the contact does not hold yet (indexing is the caller's), with its
    /// spelling from `spellings` when it is an email written differently.
    fn attach(&mut self, identity: Identity, spellings: &BTreeMap<String, String>) {
        if let Identity::Email { address } = &identity {
            if let Some(written) = spellings.get(address) {
                self.spellings
                    .entry(address.clone())
                    .or_insert_with(|| written.clone());
            }
        }
        self.identities.push(identity);
    }
}

/// Merge chains are short (each merge points at a live contact); the bound only keeps a
/// damaged chain from looping.
const MAX_CHAIN: usize = 64;

/// Where a contact id leads: the live contact it is (or was merged into), or the erased
/// tombstone; `None` for an id deskgate never minted.
pub fn follow(batch: &StateBatch<'_>, id: &str) -> Result<Option<Contact>, StoreError> {
    follow_with(|key| batch.get(key), id)
}

/// [`follow`] outside a processor step, for the control API's reads.
pub fn follow_in_store(store: &Store, id: &str) -> Result<Option<Contact>, StoreError> {
    follow_with(|key| store.state_get(key), id)
}

fn follow_with(
    get: impl Fn(&[u8]) -> Result<Option<Contact>, StoreError>,
    id: &str,
) -> Result<Option<Contact>, StoreError> {
    let mut current = id.to_owned();
    for _ in 0..MAX_CHAIN {
        let Some(contact) = get(&keys::contact(&current))? else {
            return Ok(None);
        };
        match &contact.merged_into {
            Some(next) => current = next.clone(),
            None => return Ok(Some(contact)),
        }
    }
    Err(StoreError::Corrupt {
        key: format!("contact/{id}"),
        reason: "merge chain too long".to_owned(),
    })
}

/// The id of the contact holding `identity`, outside a processor step (one index read).
pub fn find_id(store: &Store, identity: &Identity) -> Result<Option<String>, StoreError> {
    store.identity_get(&identity.index_key())
}

/// The live contact holding `identity`.
pub fn find(store: &Store, identity: &Identity) -> Result<Option<Contact>, StoreError> {
    match find_id(store, identity)? {
        Some(id) => Ok(follow_in_store(store, &id)?.filter(Contact::is_live)),
        None => Ok(None),
    }
}

/// Records that a message (journal `seq`) is on `conversation` of `contact_id`, so that merges
/// re-point the conversation and erasure finds the message.
pub fn index_message(
    batch: &mut StateBatch<'_>,
    contact_id: &str,
    conversation: &str,
    seq: u64,
) -> Result<(), StoreError> {
    let key = keys::contact_conversation(contact_id, conversation);
    // Every later message of the conversation finds it indexed already; writing it again
    // would log, flush and compact the same key once per step.
    if !batch.contains(&key)? {
        batch.put(key, &());
    }
    batch.put(keys::conversation_message(conversation, seq), &());
    Ok(())
}

#[cfg(test)]
mod tests;
