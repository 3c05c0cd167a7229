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
        Ok(derive(&self.instance_id, kind, n))
    }

    /// The id of a journaled message, derived from its journal position.
    pub fn message_id(&self, journal_seq: u64) -> String {
        derive(&self.instance_id, "message", journal_seq)
    }
}

/// The UUIDv5 of `namespace` and the name `{kind}:{n}`, hyphenated in lower case. Built
/// without `format!` (see `docs/performance.md`): a step derives several per message.
pub fn derive(namespace: &Uuid, kind: &str, n: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    let mut name = Vec::with_capacity(kind.len() + 1 + digits.len());
    name.extend_from_slice(kind.as_bytes());
    name.push(b':');
    name.extend_from_slice(digits.as_bytes());
    let id = Uuid::new_v5(namespace, &name);
    id.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_the_uuids_of_kind_and_number() {
        let instance = Uuid::from_u128(7);
        for (kind, n) in [("ticket", 0), ("contact", 12), ("message", u64::MAX)] {
            let expected = Uuid::new_v5(&instance, format!("{kind}:{n}").as_bytes());
            assert_eq!(derive(&instance, kind, n), expected.to_string());
        }
    }
}
