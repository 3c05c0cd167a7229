//! Contacts: recognising the customer behind a message from the identities it carries.
//!
//! Contacts and the identity index live in the state store, never in a map in memory, so
//! resident memory does not grow with the number of contacts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::Minter;
use crate::model::{Identity, Sender};
use crate::store::{keys, StateBatch, StoreError};

/// A customer as deskgate knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub identities: Vec<Identity>,
    pub created_at: DateTime<Utc>,
}

/// What resolving a sender did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub contact: Contact,
    /// The contact did not exist before this message.
    pub created: bool,
    /// Identities (or a name) the message added to an existing contact.
    pub added: Vec<Identity>,
    pub name_added: bool,
}

/// Finds the sender's contact by the first identity that is known, or creates one. New
/// identities the message carries are attached to the contact unless another contact already
/// holds them.
pub fn resolve(
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    sender: &Sender,
    at: DateTime<Utc>,
) -> Result<Resolution, StoreError> {
    let mut found = None;
    for identity in &sender.identities {
        if let Some(id) = batch.get::<String>(&keys::identity(&identity.index_key()))? {
            found = Some(id);
            break;
        }
    }
    let Some(id) = found else {
        let contact = Contact {
            id: minter.mint(batch, "contact")?,
            name: sender.name.clone(),
            identities: sender.identities.clone(),
            created_at: at,
        };
        for identity in &contact.identities {
            batch.put(keys::identity(&identity.index_key()), &contact.id);
        }
        batch.put(keys::contact(&contact.id), &contact);
        return Ok(Resolution {
            contact,
            created: true,
            added: Vec::new(),
            name_added: false,
        });
    };
    let mut contact: Contact =
        batch
            .get(&keys::contact(&id))?
            .ok_or_else(|| StoreError::Corrupt {
                key: format!("identity index → contact/{id}"),
                reason: "the contact an identity points to is missing".to_owned(),
            })?;
    let mut added = Vec::new();
    for identity in &sender.identities {
        let key = keys::identity(&identity.index_key());
        if batch.get_raw(&key)?.is_none() {
            batch.put(key, &contact.id);
            contact.identities.push(identity.clone());
            added.push(identity.clone());
        }
    }
    let name_added = contact.name.is_none() && sender.name.is_some();
    if name_added {
        contact.name = sender.name.clone();
    }
    if !added.is_empty() || name_added {
        batch.put(keys::contact(&contact.id), &contact);
    }
    Ok(Resolution {
        contact,
        created: false,
        added,
        name_added,
    })
}

#[cfg(test)]
mod tests;
