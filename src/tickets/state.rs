//! What the tickets step keeps beside the tickets, under `routing/…` keys (their layouts are in
//! [`crate::store::keys`]):
//! - `directory`: users and teams added or changed through the control API, and availability
//!   (a [`crate::routing::DirectoryState`]);
//! - `open_tickets`: open tickets per owner, kept with every assignment and status change;
//! - `rotation/{channel}`: the user the channel's round robin picked last;
//! - `conversation/{id}`: the conversation bookkeeping the triggers need;
//! - `spam_contact/{id}`, `spam_list`: flagged senders and spam conversations awaiting purge;
//! - `closed/{seconds}{id}`: closed tickets by the time they closed (oldest first, big-endian
//!   seconds), which `routing.closed_retention_secs` forgets.
//!
//! The ticket itself, with its pipeline, status and owner, is one record: see
//! [`crate::model::Ticket`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::Ticket;
use crate::routing::{snapshot_from, DirectoryState, RuleSet, Snapshot};
use crate::store::{keys, StateBatch, StateValue, Store, StoreError};

/// Bookkeeping of one conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    #[serde(default)]
    pub closed: bool,
    /// Its first message was a forward: replies on it are replies to a forward.
    #[serde(default)]
    pub from_forward: bool,
    #[serde(default)]
    pub spam: bool,
}

/// Spam conversations awaiting purge, oldest first.
pub type SpamList = Vec<(DateTime<Utc>, String)>;

pub fn get_or_default<T: StateValue + Default>(
    batch: &StateBatch<'_>,
    key: &[u8],
) -> Result<T, StoreError> {
    Ok(batch.get(key)?.unwrap_or_default())
}

/// The directory as the last processor step left it, read outside a step: users with their
/// availability (config overlaid with the control API's changes) and open tickets per user.
pub fn directory_snapshot(store: &Store, rules: &RuleSet) -> Result<Snapshot, StoreError> {
    let directory: DirectoryState = store.state_get(&keys::directory())?.unwrap_or_default();
    let open = store.state_get(&keys::open_tickets())?.unwrap_or_default();
    Ok(snapshot_from(rules, &directory, open, None))
}

/// The directory read outside a processor step, for the control API's listings: users with
/// their availability, teams, and open tickets per user.
pub fn directory_view(store: &Store, rules: &RuleSet) -> Result<Value, StoreError> {
    let directory: DirectoryState = store.state_get(&keys::directory())?.unwrap_or_default();
    let mut teams = rules.teams.clone();
    teams.extend(directory.teams.clone());
    let snapshot = directory_snapshot(store, rules)?;
    Ok(json!({
        "users": snapshot.users,
        "teams": teams,
        "open_tickets": snapshot.open_tickets,
    }))
}

/// A ticket from the mirror with its routing fields, for the control API.
pub fn ticket_view(store: &Store, id: &str) -> Result<Option<Value>, StoreError> {
    let Some(ticket) = store.state_get::<Ticket>(&keys::ticket(id))? else {
        return Ok(None);
    };
    let mut conversations = Vec::new();
    for conversation in &ticket.conversations {
        let bookkeeping: ConversationState = store
            .state_get(&keys::conversation_state(conversation))?
            .unwrap_or_default();
        conversations.push(json!({ "id": conversation, "state": bookkeeping }));
    }
    Ok(Some(json!({
        "ticket": crate::events::data::TicketFields::from(&ticket),
        "routing": ticket.routing,
        "conversations": conversations,
    })))
}
