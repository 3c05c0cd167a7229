//! The directory: the users and teams of the config, overlaid with the changes the control
//! API made ([`DirectoryState`], one record under `routing/directory` that `tickets` keeps). A
//! plain type and a pure function, so that every stage that needs the directory (assignment,
//! the tickets' control commands, outbound's forwards to a team) reads the record and sees
//! the same users.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Availability, RuleSet, Snapshot, User};
use crate::config::{StartingAvailability, TeamConfig};

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

/// The directory's users now: config users overlaid with control API changes and availability.
pub fn directory_users(rules: &RuleSet, directory: &DirectoryState) -> BTreeMap<String, User> {
    snapshot_from(rules, directory, BTreeMap::new(), None).users
}
