//! The events a contact outcome emits, written into the same processor step.
//!
//! - `deskgate.contact.created`: a new contact, `data.contact`.
//! - `deskgate.contact.merged`: `data.surviving` (id), `data.absorbed` (ids), `data.contact`
//!   (the survivor after the merge), `data.manual`.
//! - `deskgate.contact.merge_suggested`: `data.contact` (where the message went),
//!   `data.candidates` (contacts the conflict guard kept apart), `data.reason`.
//! - `deskgate.contact.updated`: identities or a name added (`data.added_identities`,
//!   `data.name_added`), or the owner set (`data.owner`).
//! - `deskgate.contact.erased`: `data.contact_id`, `data.conversations`, `data.messages`.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Contact, Resolution};
use crate::events::{EventDraft, EventType, OutboxWriter};
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
        event_type: EventType,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        let draft = EventDraft {
            event_type,
            subject: subject.to_owned(),
            channel: self.channel.clone(),
            data,
        };
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
            return self.push(
                batch,
                EventType::ContactCreated,
                &contact.id,
                json!({ "contact": contact }),
            );
        }
        if !resolution.absorbed.is_empty() {
            self.merged(batch, contact, &resolution.absorbed, false)?;
        }
        if !resolution.suggested.is_empty() {
            self.push(
                batch,
                EventType::ContactMergeSuggested,
                &contact.id,
                json!({
                    "contact": contact,
                    "candidates": resolution.suggested,
                    "reason": "the contacts hold different identities of a kind a person has only one of",
                }),
            )?;
        }
        if !resolution.added.is_empty() || resolution.name_added {
            self.push(
                batch,
                EventType::ContactUpdated,
                &contact.id,
                json!({
                    "contact": contact,
                    "added_identities": resolution.added,
                    "name_added": resolution.name_added,
                }),
            )?;
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
        self.push(
            batch,
            EventType::ContactMerged,
            &survivor.id,
            json!({
                "surviving": survivor.id,
                "absorbed": absorbed,
                "contact": survivor,
                "manual": manual,
            }),
        )
    }
}
