//! Folding the older two-record layout of a ticket into the one record ([`Ticket`], under
//! `ticket/{id}`: [`keys::ticket`]).
//!
//! Until this version the mirror and its routing fields were two records (`ticket/{id}` and
//! `routing/ticket/{id}`, with `routing/closed_at/{id}` beside them): [`fold_routing_records`]
//! folds what an older version left into the one record when the state opens, and
//! [`unfolded_routing`] reads it where it is for check-config, which must not change a state.

use std::collections::HashMap;

use crate::model::{Routing, Ticket};
use crate::store::{keys, Store, StoreError};

/// Where an older version kept a ticket's routing fields, and when a closed ticket closed.
const OLD_ROUTING: &[u8] = b"routing/ticket/";
const OLD_CLOSED_AT: &[u8] = b"routing/closed_at/";

/// Records folded per batch: bounded, so that a large state folds in many small commits.
const CHUNK: usize = 1_000;

/// Folds the routing records an older version kept beside each ticket into the ticket's own
/// record, and removes them. Each ticket folds in one batch with the removal, so a stop half
/// way leaves every ticket whole and the next start finishes; on a state without old records
/// it is one empty scan. Returns how many records it folded.
pub fn fold_routing_records(store: &Store) -> Result<u64, StoreError> {
    let mut folded = 0;
    for prefix in [OLD_ROUTING, OLD_CLOSED_AT] {
        loop {
            let chunk = store.state_scan::<serde_json::Value>(prefix, None, CHUNK)?;
            if chunk.is_empty() {
                break;
            }
            let mut batch = store.state_batch();
            for (key, value) in chunk {
                let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                batch.remove(key.clone());
                // A record without its ticket (deleted by a version that left it) just goes.
                let Some(mut ticket) = batch.get::<Ticket>(&keys::ticket(&id))? else {
                    continue;
                };
                let corrupt = |e: serde_json::Error| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: e.to_string(),
                };
                if prefix == OLD_ROUTING {
                    ticket.routing = serde_json::from_value(value).map_err(corrupt)?;
                } else {
                    ticket.closed_at = Some(serde_json::from_value(value).map_err(corrupt)?);
                }
                batch.put(keys::ticket(&id), &ticket);
                folded += 1;
            }
            batch.commit()?;
        }
    }
    if folded > 0 {
        store.flush()?;
        tracing::info!(
            folded,
            "folded the routing records of older tickets into the tickets"
        );
    }
    Ok(folded)
}

/// The routing records an older version left beside its tickets, by ticket id, read without
/// folding them: the fields [`fold_routing_records`] would give each ticket. Empty on a state
/// this version wrote or already folded (one empty scan).
pub fn unfolded_routing(store: &Store) -> Result<HashMap<String, Routing>, StoreError> {
    let mut routing = HashMap::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = store.state_scan::<Routing>(OLD_ROUTING, after.as_deref(), CHUNK)?;
        for (key, value) in &chunk {
            let id = String::from_utf8_lossy(&key[OLD_ROUTING.len()..]).into_owned();
            routing.insert(id, value.clone());
        }
        match chunk.last() {
            Some((key, _)) if chunk.len() == CHUNK => after = Some(key.clone()),
            _ => return Ok(routing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state written by the version before one ticket record: the mirror, its routing
    /// record and its close time, as that version encoded them.
    #[test]
    fn an_older_states_routing_records_fold_into_their_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mirror = serde_json::json!({
            "id": "T1", "number": 7, "contact_id": "C1", "channel": "mail",
            "conversations": ["V1"], "created_at": "2026-12-01T10:00:00Z",
            "updated_at": "2026-12-01T11:00:00Z",
        });
        let routing = serde_json::json!({
            "pipeline": "support", "status": "closed", "open": false, "owner": "alice",
            "trigger_conversations": ["V1"], "reopened": false, "ticketless": false, "chat": false,
        });
        let open_one = serde_json::json!({
            "id": "T2", "contact_id": "C1", "channel": "mail", "conversations": ["V2"],
            "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
        });
        let mut batch = store.state_batch();
        batch.put(keys::ticket("T1"), &mirror);
        batch.put(b"routing/ticket/T1".to_vec(), &routing);
        batch.put(
            b"routing/closed_at/T1".to_vec(),
            &serde_json::json!("2026-12-01T11:00:00Z"),
        );
        batch.put(keys::ticket("T2"), &open_one);
        // Left by a version that deleted the ticket but not its routing record.
        batch.put(b"routing/ticket/T9".to_vec(), &routing);
        batch.commit().unwrap();

        // check-config reads the old records where they are, and leaves them there.
        let unfolded = unfolded_routing(&store).unwrap();
        assert_eq!(unfolded["T1"].status.as_deref(), Some("closed"));
        assert_eq!(unfolded.len(), 2);
        assert_eq!(
            crate::tickets::pipeline_usage(&store).unwrap()["support"][&Some("closed".to_owned())],
            1
        );
        assert_eq!(unfolded_routing(&store).unwrap().len(), 2);

        assert_eq!(fold_routing_records(&store).unwrap(), 2);
        assert!(unfolded_routing(&store).unwrap().is_empty());

        let ticket: Ticket = store.state_get(&keys::ticket("T1")).unwrap().unwrap();
        assert_eq!(ticket.number, 7);
        assert_eq!(ticket.routing.status.as_deref(), Some("closed"));
        assert!(!ticket.routing.open);
        assert_eq!(ticket.routing.owner.as_deref(), Some("alice"));
        assert_eq!(
            ticket.closed_at.unwrap().to_rfc3339(),
            "2026-12-01T11:00:00+00:00"
        );
        // A ticket an older version never routed reads as it did then: open, no pipeline.
        let never_routed: Ticket = store.state_get(&keys::ticket("T2")).unwrap().unwrap();
        assert_eq!(never_routed.routing, Routing::default());
        assert!(never_routed.closed_at.is_none());
        for old in [&b"routing/ticket/"[..], b"routing/closed_at/"] {
            let left = store
                .state_scan::<serde_json::Value>(old, None, 10)
                .unwrap();
            assert!(left.is_empty(), "{left:?}");
        }
        // Once folded, a start finds nothing to do.
        assert_eq!(fold_routing_records(&store).unwrap(), 0);
    }
}
