//! People a mail was copied to (Cc): they become contacts (announced like any other) and
//! participants of the ticket, so that a reply of theirs naming the ticket only by its subject
//! tag is accepted (see `conversations::email`).

use super::announce::Announcer;
use crate::ids::Minter;
use crate::model::{Inbound, Sender, Ticket};
use crate::store::{keys, StateBatch, StoreError};

/// Participants a ticket keeps at most (and Cc addresses read per mail).
const MAX_PARTICIPANTS: usize = 50;

pub struct Copied<'a> {
    pub minter: &'a Minter,
    pub announce: &'a Announcer<'a>,
}

impl Copied<'_> {
    /// Adds the Cc'd people of a person's mail to `ticket`, leaving out the sender and the
    /// desk's own mailboxes (`own`); machine mail adds nobody.
    pub fn add(
        &self,
        batch: &mut StateBatch<'_>,
        inbound: &Inbound,
        own: &dyn Fn(&str) -> bool,
        ticket: &mut Ticket,
    ) -> Result<(), StoreError> {
        let Some(email) = inbound.email.as_ref().filter(|_| !inbound.flags.automatic) else {
            return Ok(());
        };
        let before = ticket.participants.len();
        for address in email.cc.iter().filter(|a| !own(a)).take(MAX_PARTICIPANTS) {
            let Some(identity) = crate::identity::email(address) else {
                continue;
            };
            if inbound.sender.identities.contains(&identity) {
                continue;
            }
            let sender = Sender {
                identities: vec![identity],
                ..Sender::default()
            };
            let resolution = super::resolve(batch, self.minter, &sender, inbound.received_at)?;
            self.announce.resolution(batch, &resolution)?;
            let id = resolution.contact.id;
            let room = ticket.participants.len() < MAX_PARTICIPANTS;
            if id != ticket.contact_id && !ticket.participants.contains(&id) && room {
                ticket.participants.push(id);
            }
        }
        if ticket.participants.len() != before {
            batch.put(keys::ticket(&ticket.id), &*ticket);
        }
        Ok(())
    }
}
