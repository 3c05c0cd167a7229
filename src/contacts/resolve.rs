//! From the identities a message carries to one contact.
//!
//! Every identity is looked up. None known: a new contact. One contact: it gains the identities
//! it did not have. Several: they are one person seen through different channels, and merge
//! into the oldest, unless the conflict guard objects: when the contacts together would hold
//! two different identities of a kind a person has only one of
//! ([`identity::one_per_person_scope`]), nothing merges, the message goes to the contact of its
//! strongest identity, and a merge is only suggested.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{follow, merge};
use crate::identity;
use crate::ids::Minter;
use crate::model::{Contact, Identity, Sender};
use crate::store::{keys, StateBatch, StoreError};

/// What resolving a sender did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The contact the message belongs to.
    pub contact: Contact,
    /// The contact did not exist before this message.
    pub created: bool,
    /// Identities the message added to an existing contact.
    pub added: Vec<Identity>,
    pub name_added: bool,
    /// The message told the contact's locale, and it was not the one recorded.
    pub locale_changed: bool,
    /// Contacts merged into `contact` because the message showed they are the same person.
    pub absorbed: Vec<String>,
    /// Contacts the message also matched but that the conflict guard kept apart.
    pub suggested: Vec<String>,
}

/// Finds (or creates) the sender's contact, merging and attaching identities as the rules in
/// this module's documentation say.
pub fn resolve(
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    sender: &Sender,
    at: DateTime<Utc>,
) -> Result<Resolution, StoreError> {
    let mut identities: Vec<Identity> = Vec::with_capacity(sender.identities.len());
    for identity in &sender.identities {
        if !identities.contains(identity) {
            identities.push(identity.clone());
        }
    }
    // Matched live contacts, in the order of the strongest identity that found each.
    let mut matched: Vec<Contact> = Vec::new();
    let mut unknown: Vec<Identity> = Vec::new();
    for identity in &identities {
        let found = batch.identity_get(&identity.index_key())?;
        let contact = match found {
            Some(id) => follow(batch, &id)?.filter(Contact::is_live),
            None => None,
        };
        match contact {
            Some(contact) if matched.iter().all(|c| c.id != contact.id) => matched.push(contact),
            Some(_) => {}
            None => unknown.push(identity.clone()),
        }
    }
    if matched.is_empty() {
        return create(batch, minter, sender, identities, at);
    }
    let mut absorbed = Vec::new();
    let mut suggested = Vec::new();
    let mut contact = if matched.len() == 1 {
        matched.remove(0)
    } else if conflicts(matched.iter().flat_map(|c| c.identities.iter())) {
        let strongest = matched.remove(0);
        suggested = matched.into_iter().map(|c| c.id).collect();
        strongest
    } else {
        // The oldest survives; ties (one step's contacts share a time) go to the smaller id,
        // so the choice is the same on every replay.
        matched.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut survivor = matched.remove(0);
        for other in matched {
            absorbed.push(other.id.clone());
            merge::absorb(batch, &mut survivor, other)?;
        }
        survivor
    };
    let mut added = Vec::new();
    for identity in unknown {
        // An identity that would give the contact a second one-per-person id in the same scope
        // is left unattached: the evidence says it is someone else.
        let clash = conflicts(contact.identities.iter().chain(std::iter::once(&identity)));
        if !clash {
            batch.identity_put(&identity.index_key(), &contact.id)?;
            contact.attach(identity.clone(), &sender.spellings);
            added.push(identity);
        }
    }
    let (name_added, locale_changed) = learn(&mut contact, sender);
    if !added.is_empty() || name_added || locale_changed || !absorbed.is_empty() {
        batch.put(keys::contact(&contact.id), &contact);
    }
    Ok(Resolution {
        contact,
        created: false,
        added,
        name_added,
        locale_changed,
        absorbed,
        suggested,
    })
}

/// What a message tells of its contact besides identities: whether it gave a name the contact
/// had none of, and whether it told a locale other than the recorded one.
fn learn(contact: &mut Contact, sender: &Sender) -> (bool, bool) {
    let name_added = contact.name.is_none() && sender.name.is_some();
    if name_added {
        contact.name = sender.name.clone();
    }
    let locale_changed = sender.locale.is_some() && contact.locale != sender.locale;
    if locale_changed {
        contact.locale = sender.locale.clone();
    }
    (name_added, locale_changed)
}

fn create(
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    sender: &Sender,
    identities: Vec<Identity>,
    at: DateTime<Utc>,
) -> Result<Resolution, StoreError> {
    let mut contact = Contact {
        id: minter.mint(batch, "contact")?,
        name: sender.name.clone(),
        identities: Vec::with_capacity(identities.len()),
        spellings: BTreeMap::new(),
        created_at: at,
        locale: sender.locale.clone(),
        owner: None,
        merged_into: None,
        erased: false,
        consent: BTreeMap::new(),
    };
    for identity in identities {
        // The first of a scope wins, as the strongest identity does elsewhere.
        if !conflicts(contact.identities.iter().chain(std::iter::once(&identity))) {
            batch.identity_put(&identity.index_key(), &contact.id)?;
            contact.attach(identity, &sender.spellings);
        }
    }
    batch.put(keys::contact(&contact.id), &contact);
    Ok(Resolution {
        contact,
        created: true,
        added: Vec::new(),
        name_added: false,
        locale_changed: false,
        absorbed: Vec::new(),
        suggested: Vec::new(),
    })
}

/// Whether these identities include two different ones of the same one-per-person scope.
pub fn conflicts<'a>(identities: impl IntoIterator<Item = &'a Identity>) -> bool {
    let mut seen: BTreeMap<String, &Identity> = BTreeMap::new();
    for identity in identities {
        if let Some(scope) = identity::one_per_person_scope(identity) {
            match seen.get(&scope) {
                Some(other) if *other != identity => return true,
                _ => {
                    seen.insert(scope, identity);
                }
            }
        }
    }
    false
}
