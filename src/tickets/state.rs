//! What routing keeps in the state tree, under `routing/…` keys:
//! - `directory`: users and teams added or changed through the control API, and availability;
//! - `open_tickets`: open tickets per owner, kept with every assignment and status change;
//! - `rotation/{channel}`: the user the channel's round robin picked last;
//! - `ticket/{id}`, `conversation/{id}`: the mirror's pipeline, status and owner, and the
//!   conversation bookkeeping the triggers need;
//! - `spam_contact/{id}`, `spam_list`: flagged senders and spam conversations awaiting purge;
//! - `closed/{seconds}{id}`, `closed_at/{id}`: closed tickets by the time they closed (oldest
//!   first, big-endian seconds), which `routing.closed_retention_secs` forgets.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{StartingAvailability, TeamConfig};
use crate::conversations::Ticket;
use crate::model::{Availability, Identity};
use crate::routing::{RuleSet, Snapshot, User};
use crate::store::{keys, StateBatch, Store, StoreError};

/// Directory changes made through the control API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirectoryState {
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    #[serde(default)]
    pub teams: BTreeMap<String, TeamConfig>,
    #[serde(default)]
    pub availability: BTreeMap<String, Availability>,
}

/// The mirror's routing fields of one ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct TicketState {
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

/// The parts of a contact routing reads, tolerant of fields added by other work (the contacts
/// work adds `owner`; reading it with a default lets both branches meet).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContactView {
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub identities: Vec<Identity>,
}

impl ContactView {
    pub fn emails(&self) -> Vec<String> {
        self.identities
            .iter()
            .filter_map(|identity| match identity {
                Identity::Email { address } => Some(address.clone()),
                _ => None,
            })
            .collect()
    }
}

pub fn ticket_key(id: &str) -> Vec<u8> {
    keys::routing(&format!("ticket/{id}"))
}

pub fn conversation_key(id: &str) -> Vec<u8> {
    keys::routing(&format!("conversation/{id}"))
}

pub fn rotation_key(channel: &str) -> Vec<u8> {
    keys::routing(&format!("rotation/{channel}"))
}

pub fn spam_contact_key(contact: &str) -> Vec<u8> {
    keys::routing(&format!("spam_contact/{contact}"))
}

pub fn directory_key() -> Vec<u8> {
    keys::routing("directory")
}

pub fn open_tickets_key() -> Vec<u8> {
    keys::routing("open_tickets")
}

pub fn spam_list_key() -> Vec<u8> {
    keys::routing("spam_list")
}

const CLOSED: &[u8] = b"routing/closed/";

/// A closed ticket's entry in the index of closed tickets, by the second it closed.
pub fn closed_key(at: DateTime<Utc>, ticket: &str) -> Vec<u8> {
    let mut key = closed_bound(at.timestamp());
    key.extend_from_slice(ticket.as_bytes());
    key
}

/// The start of the index of closed tickets.
pub fn closed_start() -> &'static [u8] {
    CLOSED
}

/// The end (exclusive) of the index entries of tickets closed at or before `cutoff`.
pub fn closed_until(cutoff: DateTime<Utc>) -> Vec<u8> {
    closed_bound(cutoff.timestamp().saturating_add(1))
}

fn closed_bound(seconds: i64) -> Vec<u8> {
    let mut key = CLOSED.to_vec();
    key.extend_from_slice(&(seconds.max(0) as u64).to_be_bytes());
    key
}

/// The ticket id of an entry of the closed index.
pub fn closed_ticket(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(CLOSED.len() + 8..).unwrap_or_default()).into_owned()
}

/// When a closed ticket closed (kept beside its mirror so that event payloads stay as they were).
pub fn closed_at_key(ticket: &str) -> Vec<u8> {
    keys::routing(&format!("closed_at/{ticket}"))
}

/// Spam conversations awaiting purge, oldest first.
pub type SpamList = Vec<(DateTime<Utc>, String)>;

pub fn get_or_default<T: DeserializeOwned + Default>(
    batch: &StateBatch<'_>,
    key: &[u8],
) -> Result<T, StoreError> {
    Ok(batch.get(key)?.unwrap_or_default())
}

/// The directory as decisions see it: config users overlaid with control API changes and
/// availability, plus open-ticket counts and the channel's rotation.
pub fn snapshot_from(
    rules: &RuleSet,
    directory: &DirectoryState,
    open_tickets: BTreeMap<String, u64>,
    last_picked: Option<String>,
) -> Snapshot {
    let mut users: BTreeMap<String, User> = rules
        .users
        .iter()
        .map(|(id, u)| {
            let user = User {
                name: u.name.clone(),
                email: u.email.clone(),
                seat: u.seat,
                teams: u.teams.clone(),
                availability: match u.availability {
                    StartingAvailability::Available => Availability::Available,
                    StartingAvailability::Away => Availability::Away,
                    StartingAvailability::Offline => Availability::Offline,
                },
            };
            (id.clone(), user)
        })
        .collect();
    users.extend(directory.users.clone());
    for (id, availability) in &directory.availability {
        if let Some(user) = users.get_mut(id) {
            user.availability = *availability;
        }
    }
    Snapshot {
        users,
        open_tickets,
        last_picked,
    }
}

/// The directory as the last processor step left it, read outside a step: users with their
/// availability (config overlaid with the control API's changes) and open tickets per user.
pub fn directory_snapshot(store: &Store, rules: &RuleSet) -> Result<Snapshot, StoreError> {
    let directory: DirectoryState = store.state_get(&directory_key())?.unwrap_or_default();
    let open = store.state_get(&open_tickets_key())?.unwrap_or_default();
    Ok(snapshot_from(rules, &directory, open, None))
}

/// The directory read outside a processor step, for the control API's listings: users with
/// their availability, teams, and open tickets per user.
pub fn directory_view(store: &Store, rules: &RuleSet) -> Result<Value, StoreError> {
    let directory: DirectoryState = store.state_get(&directory_key())?.unwrap_or_default();
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
    let state: TicketState = store.state_get(&ticket_key(id))?.unwrap_or_default();
    let mut conversations = Vec::new();
    for conversation in &ticket.conversations {
        let bookkeeping: ConversationState = store
            .state_get(&conversation_key(conversation))?
            .unwrap_or_default();
        conversations.push(json!({ "id": conversation, "state": bookkeeping }));
    }
    Ok(Some(json!({
        "ticket": ticket,
        "routing": state,
        "conversations": conversations,
    })))
}
