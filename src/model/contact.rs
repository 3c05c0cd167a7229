//! The contact record: a customer as deskgate knows them, one record under `contact/{id}`.
//! A plain type here because events show it whole and other stages read it; `contacts`
//! recognises, merges and erases them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Identity;

/// A customer as deskgate knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct Contact {
    /// The contact's id (stable; an absorbed contact's id resolves to its survivor).
    pub id: String,
    /// The name the customer gave, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every way deskgate recognises them (email, phone, channel ids), normalised.
    pub identities: Vec<Identity>,
    /// Email addresses as the customer first wrote them, keyed by the normalised address of
    /// one of `identities`, where the two differ: for display (see [`crate::model::Sender::spellings`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spellings: BTreeMap<String, String>,
    /// When deskgate first saw them.
    pub created_at: DateTime<Utc>,
    /// Their locale as a channel last told it (Messenger's profile `fr_FR`): the language of
    /// automatic messages to them when deskgate has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The agent who owns this contact; routing prefers them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Set on a contact absorbed by a merge: the contact it now lives on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// The contact was erased: nothing but its id remains.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
    /// Their consent to a channel's data-protection text (GDPR), by channel id: the latest they
    /// gave on each channel that asks for it (`outbound.messenger.<channel>.consent`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consent: BTreeMap<String, Consent>,
}

/// A contact's consent to one channel's data-protection text, as deskgate recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
pub struct Consent {
    /// `implicit` (the text was shown; writing was consent) or `explicit` (they tapped the
    /// agree button).
    pub kind: ConsentKind,
    /// The version of the text they consented to (`consent_version` in the channel's config).
    pub version: u32,
    /// When: the time deskgate received the message that gave it.
    pub at: DateTime<Utc>,
}

/// How a consent was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentKind {
    Implicit,
    Explicit,
}

impl Contact {
    /// Its email addresses, strongest first.
    pub fn emails(&self) -> impl Iterator<Item = &str> {
        self.identities
            .iter()
            .filter_map(|identity| match identity {
                Identity::Email { address } => Some(address.as_str()),
                _ => None,
            })
    }

    /// Whether the contact is in use (neither absorbed nor erased).
    pub fn is_live(&self) -> bool {
        self.merged_into.is_none() && !self.erased
    }
}
