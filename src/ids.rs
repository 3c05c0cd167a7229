//! Ids that deskgate mints for contacts, conversations, tickets and messages.
//!
//! Every id is a UUIDv5 of this database's instance id and a counter kept in the same atomic
//! step as the record it names, so replaying a step after a crash mints the same ids, and two
//! deskgate instances never mint the same one.

use uuid::Uuid;

use crate::store::{keys, StateBatch, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct Minter {
    instance_id: Uuid,
}

impl Minter {
    pub fn new(instance_id: Uuid) -> Self {
        Minter { instance_id }
    }

    /// A fresh id of a kind (`contact`, `ticket`, …), counted inside the step.
    pub fn mint(&self, batch: &mut StateBatch<'_>, kind: &str) -> Result<String, StoreError> {
        let n = batch.next(&keys::counter(kind))?;
        Ok(self.derive(&format!("{kind}:{n}")))
    }

    /// The id of a journaled message, derived from its journal position.
    pub fn message_id(&self, journal_seq: u64) -> String {
        self.derive(&format!("message:{journal_seq}"))
    }

    fn derive(&self, name: &str) -> String {
        Uuid::new_v5(&self.instance_id, name.as_bytes()).to_string()
    }
}
