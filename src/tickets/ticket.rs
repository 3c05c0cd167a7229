//! The ticket: deskgate's mirror of one ticket of the ticket store, one record under
//! `ticket/{id}` ([`keys::ticket`]): what it is (contact, channel, conversations, number) and
//! where it stands (pipeline, status, owner and what the status triggers need).
//!
//! Until this version the mirror and its routing fields were two records (`ticket/{id}` and
//! `routing/ticket/{id}`, with `routing/closed_at/{id}` beside them): [`fold_routing_records`]
//! folds what an older version left into the one record when the state opens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{keys, Store, StoreError};

/// A ticket as deskgate mirrors it; the ticket store owns the real one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The ticket's id (stable).
    pub id: String,
    /// The short number people name the ticket by (`#1042`): unique in this deskgate instance
    /// and never given twice. 0 for tickets opened before numbers existed.
    #[serde(default)]
    pub number: u64,
    /// The contact (customer) the ticket is for.
    pub contact_id: String,
    /// The channel of the message that opened it.
    pub channel: String,
    /// The subject of the message that opened it, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The ids of its conversations (threads), oldest first.
    pub conversations: Vec<String>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When a message or change last touched it.
    pub updated_at: DateTime<Utc>,
    /// Tickets a mail proved to be the same thread as this one, already suggested for a merge
    /// (`deskgate.ticket.merge_suggested`), so that the suggestion is made once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_suggested: Vec<String>,
    /// Contacts besides the ticket's own who take part: people its mail was copied to (Cc).
    /// A mail naming the ticket only by its subject tag is accepted from them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
    /// Where it stands: pipeline, status, owner, and what the status triggers need.
    #[serde(default)]
    pub routing: Routing,
    /// When it closed, while it is closed: its entry in the index of closed tickets
    /// ([`crate::tickets`]' `closed_key`) is filed under this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

/// A ticket's pipeline, status and owner, and the bookkeeping its status triggers need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct Routing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Whether the status is an open one (a ticket without a pipeline is open).
    pub open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Conversations whose customer replies fire `customer_replied`: the one the ticket was
    /// created from, and new threads joined after a close and reopen.
    #[serde(default)]
    pub trigger_conversations: Vec<String>,
    /// The ticket was closed and reopened, so new threads on it count for the trigger.
    #[serde(default)]
    pub reopened: bool,
    /// Messages on this channel do not open tickets: the store sees conversation events only.
    #[serde(default)]
    pub ticketless: bool,
    #[serde(default)]
    pub chat: bool,
}

/// A ticket nothing has routed yet is open, in no pipeline, with no owner.
impl Default for Routing {
    fn default() -> Self {
        Routing {
            pipeline: None,
            status: None,
            open: true,
            owner: None,
            priority: None,
            category: None,
            trigger_conversations: Vec::new(),
            reopened: false,
            ticketless: false,
            chat: false,
        }
    }
}

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

        assert_eq!(fold_routing_records(&store).unwrap(), 2);

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
