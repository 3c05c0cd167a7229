//! The processor's control records that need more than the ticket commands: retrying a
//! quarantined journal record in its place, and refusing a contact owner who is no user.

use serde_json::json;

use super::{Processor, Quarantined};
use crate::live::Live;
use crate::model::{ControlOutcome, Record, Refusal};
use crate::routing::RuleSet;
use crate::store::{keys, StateBatch, StoreError};
use crate::tickets;

impl Processor {
    /// Applies again the journal record at `entry`, which was quarantined, as if it had just
    /// arrived in its place (its seq, its ids): the control record at `seq` gets the outcome.
    /// A record that still fails leaves nothing behind and is answered 422 with the reason.
    pub(super) fn retry_quarantined(
        &self,
        live: &Live,
        batch: &mut StateBatch<'_>,
        seq: u64,
        entry: u64,
    ) -> Result<(), StoreError> {
        let refuse =
            |refusal: fn(String) -> Refusal, error: String| ControlOutcome::Refused(refusal(error));
        let key = keys::quarantine(entry);
        let outcome = match batch.get::<Quarantined>(&key)? {
            None => refuse(
                Refusal::NotFound,
                format!("no quarantine entry at journal seq {entry}"),
            ),
            Some(found) if found.retried_as.is_some() => ControlOutcome::Done(
                json!({ "status": "applied", "duplicate": true, "entry": found }),
            ),
            Some(mut found) => {
                let savepoint = batch.savepoint();
                let applied = match self.store.journal_get(entry)? {
                    Some(Record::Inbound(inbound)) => self
                        .apply_inbound(live, batch, entry, &inbound)
                        .map(|()| Some(inbound.external_id.clone())),
                    Some(Record::Event(event)) => {
                        crate::delivery::apply(batch, &self.outbox, entry, &event)
                            .map(|()| Some(event.external_id.clone()))
                    }
                    _ => Ok(None),
                };
                match applied {
                    Err(error @ StoreError::Db(_)) => return Err(error),
                    Err(error) => {
                        batch.rollback_to(savepoint);
                        refuse(
                            Refusal::Invalid,
                            format!("still cannot be applied: {error}"),
                        )
                    }
                    Ok(None) => refuse(
                        Refusal::Invalid,
                        format!(
                            "journal record {entry} is gone or is not a message or channel event"
                        ),
                    ),
                    Ok(Some(external_id)) => {
                        found.retried_as = Some(entry);
                        batch.put(key, &found);
                        ControlOutcome::Done(json!({ "status": "applied", "journal_seq": entry,
                                    "external_id": external_id, "duplicate": false, "entry": found }))
                    }
                }
            }
        };
        batch.put(keys::control_outcome(seq), &outcome);
        Ok(())
    }
}

/// A contact owner must be a user of the directory: the refusal to store, naming the user.
pub(super) fn unknown_owner(
    rules: &RuleSet,
    batch: &StateBatch<'_>,
    command: &crate::model::ContactCommand,
) -> Result<Option<ControlOutcome>, StoreError> {
    let crate::model::ContactCommand::SetOwner {
        owner: Some(owner), ..
    } = command
    else {
        return Ok(None);
    };
    if tickets::user_exists(rules, batch, owner)? {
        return Ok(None);
    }
    Ok(Some(ControlOutcome::Refused(Refusal::Invalid(format!(
        "owner: unknown user {owner:?}"
    )))))
}
