//! Building the index of tickets by contact (`keys::contact_tickets`) once, for a state
//! directory written before deskgate kept it: the processor steps keep it from then on (a new
//! ticket, a split's new ticket, a ticket gone, a merge moving a contact's tickets, an erasure).
//!
//! Runs at start before the processor, in chunks (each committed and flushed); every chunk only
//! puts what the tickets say, so a crash in between builds again from the start. A meta key
//! marks it done. A ticket left on a contact that a merge absorbed (merges moved only the
//! tickets of the absorbed contact's own conversations before) moves to the contact it was
//! merged into, as `deskgate.contact.merged` told the ticket store then; an erased contact's
//! tickets stay out of the index, as erasure leaves them.

use super::follow;
use crate::model::Ticket;
use crate::store::{keys, Store, StoreError};

const CHUNK: usize = 10_000;

/// What building the index did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Built {
    /// Tickets entered in the index.
    pub indexed: usize,
    /// Tickets moved off an absorbed contact onto the one it was merged into.
    pub moved: usize,
}

/// Builds the index unless it is built; returns what it did (nothing when it was built).
pub fn build_once(store: &Store) -> Result<Built, StoreError> {
    let mut built = Built::default();
    if store
        .state_get::<bool>(keys::CONTACT_TICKETS_INDEXED)?
        .is_some()
    {
        return Ok(built);
    }
    let prefix = keys::ticket("");
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = store.state_scan::<Ticket>(&prefix, after.as_deref(), CHUNK)?;
        let Some((last, _)) = chunk.last() else {
            break;
        };
        after = Some(last.clone());
        let mut batch = store.state_batch();
        for (key, mut ticket) in chunk {
            match follow(&batch, &ticket.contact_id)? {
                Some(contact) if contact.erased => continue,
                Some(contact) if contact.id != ticket.contact_id => {
                    ticket.contact_id = contact.id;
                    batch.put(key, &ticket);
                    built.moved += 1;
                }
                _ => {}
            }
            batch.put(keys::contact_ticket(&ticket.contact_id, &ticket.id), &());
            built.indexed += 1;
        }
        batch.commit()?;
        store.flush()?;
        tracing::info!(
            indexed = built.indexed,
            moved = built.moved,
            "contact ticket index: indexed stored tickets"
        );
    }
    let mut batch = store.state_batch();
    batch.put(keys::CONTACT_TICKETS_INDEXED.to_vec(), &true);
    batch.commit()?;
    store.flush()?;
    Ok(built)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::model::Contact;

    fn contact(id: &str, merged_into: Option<&str>, erased: bool) -> Contact {
        Contact {
            id: id.to_owned(),
            name: None,
            identities: Vec::new(),
            spellings: Default::default(),
            created_at: DateTime::UNIX_EPOCH,
            locale: None,
            owner: None,
            merged_into: merged_into.map(str::to_owned),
            erased,
            consent: Default::default(),
        }
    }

    fn ticket(id: &str, contact_id: &str) -> Ticket {
        Ticket {
            id: id.to_owned(),
            number: 0,
            contact_id: contact_id.to_owned(),
            channel: "api".to_owned(),
            subject: None,
            conversations: Vec::new(),
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            merge_suggested: Vec::new(),
            participants: Vec::new(),
            routing: Default::default(),
            closed_at: None,
        }
    }

    fn indexed(store: &Store, contact: &str) -> Vec<String> {
        let prefix = keys::contact_tickets(contact);
        let found = store.state_scan::<()>(&prefix, None, 100).unwrap();
        let ids = found
            .into_iter()
            .map(|(key, ())| key[prefix.len()..].to_vec());
        ids.map(|id| String::from_utf8(id).unwrap()).collect()
    }

    /// A state from before the index: every ticket is indexed under its contact, one left on
    /// an absorbed contact moves to where it was merged, an erased contact's stays out; a
    /// second start does nothing.
    #[test]
    fn stored_tickets_are_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = store.state_batch();
        let contacts = [
            contact("a", Some("b"), false),
            contact("b", Some("c"), false),
            contact("c", None, false),
            contact("e", None, true),
        ];
        for c in &contacts {
            batch.put(keys::contact(&c.id), c);
        }
        for (id, owner) in [("t1", "a"), ("t2", "c"), ("t3", "e"), ("t4", "c")] {
            batch.put(keys::ticket(id), &ticket(id, owner));
        }
        batch.commit().unwrap();

        let built = build_once(&store).unwrap();
        assert_eq!(
            built,
            Built {
                indexed: 3,
                moved: 1
            }
        );
        assert_eq!(indexed(&store, "c"), ["t1", "t2", "t4"]);
        assert!(indexed(&store, "a").is_empty() && indexed(&store, "e").is_empty());
        let moved: Ticket = store.state_get(&keys::ticket("t1")).unwrap().unwrap();
        assert_eq!(moved.contact_id, "c");

        // Built: a ticket written without the index now stays out of it.
        let mut batch = store.state_batch();
        batch.put(keys::ticket("t5"), &ticket("t5", "c"));
        batch.commit().unwrap();
        assert_eq!(build_once(&store).unwrap(), Built::default());
        assert_eq!(indexed(&store, "c"), ["t1", "t2", "t4"]);
    }
}
