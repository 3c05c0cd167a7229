//! Forgetting closed tickets: a ticket closed longer than `routing.closed_retention_secs` ago
//! leaves deskgate's state with everything kept for it (its mirror, its conversations with
//! their thread and Message-ID indexes, what outbound kept to answer on them, its contact's
//! index of them and their index of journal records). Without this the state grows with every
//! ticket ever opened; with it, a message on one of its threads later opens a new ticket (a
//! follow-up), and the ticket store keeps the old one.
//!
//! The processor runs this at the start of every inbound and control record, before the
//! record is threaded, so that a message arriving after the retention never reopens a ticket
//! that is about to go. Times come from the record, so a replay forgets at the same points.
//! The configuration keeps `closed_retention_secs` at or above `journal.retention_secs`: by
//! the time a ticket goes, its conversations' journal records are gone too, and erasing its
//! contact has nothing left there to redact.

use super::Step;
use crate::conversations::Conversation;
use crate::ids::Minter;
use crate::routing::RuleSet;
use crate::store::{keys, StateBatch, StoreError};

/// Closed tickets forgotten per record at most, so that a long backlog (retention shortened
/// on a large state) is worked off over many steps instead of making one huge batch.
const PER_STEP: usize = 16;

/// Forgets the tickets closed at or before `at` minus the retention. Returns how many.
pub fn forget_closed(
    rules: &RuleSet,
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<usize, StoreError> {
    let Some(retention) = rules.closed_retention else {
        return Ok(0);
    };
    let until = keys::closed_until(at - retention);
    if !batch.may_hold_range(keys::closed_start(), &until)? {
        return Ok(0);
    }
    let due = batch.keys_in_range(keys::closed_start(), &until, PER_STEP)?;
    let mut step = Step {
        batch,
        rules,
        minter,
        at,
        conversation: None,
        events: Vec::new(),
        actions: Vec::new(),
        closed: Vec::new(),
    };
    let mut forgotten = 0;
    for key in due {
        let id = keys::closed_ticket(&key);
        step.batch.remove(key);
        let Some(ticket) = step.ticket(&id)? else {
            // Deleted or merged since it closed.
            continue;
        };
        for conversation in &ticket.conversations {
            forget_indexes(step.batch, conversation)?;
        }
        step.delete_ticket(&ticket)?;
        forgotten += 1;
    }
    if forgotten > 0 {
        step.batch
            .count("deskgate_tickets_forgotten_total", &[], forgotten as u64);
    }
    Ok(forgotten)
}

/// The indexes `delete_ticket` keeps for erasure: the contact's entry for the conversation
/// and the conversation's entries for its journal records.
fn forget_indexes(batch: &mut StateBatch<'_>, conversation: &str) -> Result<(), StoreError> {
    if let Some(found) = batch.get::<Conversation>(&keys::conversation(conversation))? {
        batch.remove(keys::contact_conversation(&found.contact_id, conversation));
    }
    for key in batch.keys_with_prefix(&keys::conversation_messages(conversation))? {
        batch.remove(key);
    }
    Ok(())
}
