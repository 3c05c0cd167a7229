//! The events a contact outcome emits, written into the same processor step.
//!
//! - `deskgate.contact.created`: a new contact, `data.contact`.
//! - `deskgate.contact.merged`: `data.surviving` (id), `data.absorbed` (ids), `data.contact`
//!   (the survivor after the merge), `data.manual`.
//! - `deskgate.contact.merge_suggested`: `data.contact` (where the message went),
//!   `data.candidates` (contacts the conflict guard kept apart), `data.reason`.
//! - `deskgate.contact.updated`: identities or a name added (`data.added_identities`,
//!   `data.name_added`), a new locale (`data.contact.locale`), or the owner set (`data.owner`).
//! - `deskgate.contact.erased`: `data.contact_id`, `data.conversations`, `data.messages`.

use chrono::{DateTime, Utc};

use super::Resolution;
use crate::events::data::{
    ContactCreated, ContactMergeSuggested, ContactMerged, ContactUpdated, EventData,
};
use crate::events::{EventDraft, OutboxWriter};
use crate::model::Contact;
use crate::store::{StateBatch, StoreError};

/// Where the events go and when they happened.
pub struct Announcer<'o> {
    pub outbox: &'o OutboxWriter,
    pub at: DateTime<Utc>,
    pub channel: Option<String>,
}

impl Announcer<'_> {
    pub fn push(
        &self,
        batch: &mut StateBatch<'_>,
        subject: &str,
        data: EventData,
    ) -> Result<(), StoreError> {
        let draft = EventDraft::new(subject, self.channel.as_deref(), data);
        self.outbox.push(batch, self.at, &draft)?;
        Ok(())
    }

    /// The events of resolving a message's sender.
    pub fn resolution(
        &self,
        batch: &mut StateBatch<'_>,
        resolution: &Resolution,
    ) -> Result<(), StoreError> {
        let contact = &resolution.contact;
        if resolution.created {
            let data = ContactCreated {
                contact: contact.clone(),
            };
            return self.push(batch, &contact.id, EventData::ContactCreated(data));
        }
        if !resolution.absorbed.is_empty() {
            self.merged(batch, contact, &resolution.absorbed, false)?;
        }
        if !resolution.suggested.is_empty() {
            let data = ContactMergeSuggested {
                contact: contact.clone(),
                candidates: resolution.suggested.clone(),
                reason: ContactMergeSuggested::GUARD.to_owned(),
            };
            self.push(batch, &contact.id, EventData::ContactMergeSuggested(data))?;
        }
        if !resolution.added.is_empty() || resolution.name_added || resolution.locale_changed {
            let data = ContactUpdated {
                contact: contact.clone(),
                added_identities: Some(resolution.added.clone()),
                name_added: Some(resolution.name_added),
                owner: None,
                consent: None,
            };
            self.push(batch, &contact.id, EventData::ContactUpdated(data))?;
        }
        Ok(())
    }

    pub fn merged(
        &self,
        batch: &mut StateBatch<'_>,
        survivor: &Contact,
        absorbed: &[String],
        manual: bool,
    ) -> Result<(), StoreError> {
        let data = ContactMerged {
            surviving: survivor.id.clone(),
            absorbed: absorbed.to_vec(),
            contact: survivor.clone(),
            manual,
        };
        self.push(batch, &survivor.id, EventData::ContactMerged(data))
    }
}
