//! The assignment decision: a pure function of the channel's rule, a snapshot of the directory
//! and the contact. It reads no storage, so fixture files can drive it and a replay decides the
//! same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{ChannelRouting, RuleKind};
pub use crate::model::Availability;

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::Away => "away",
            Availability::Offline => "offline",
        }
    }
}

/// One agent as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub seat: bool,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub availability: Availability,
}

/// What the decision may know about the directory and the ticket mirror at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub users: BTreeMap<String, User>,
    /// Open tickets held by each user, from deskgate's ticket mirror.
    #[serde(default)]
    pub open_tickets: BTreeMap<String, u64>,
    /// The user the channel's round robin picked last.
    #[serde(default)]
    pub last_picked: Option<String>,
}

/// Who the ticket goes to, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub assignee: Option<String>,
    /// A short human account: `owner alice is away; fallback team support; round robin picked bob`.
    pub trace: String,
    /// Set when the round robin picked someone: the rotation's new position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picked_by_rotation: Option<String>,
}

/// Decides the assignee of a new ticket.
pub fn decide(rules: &ChannelRouting, snapshot: &Snapshot, owner: Option<&str>) -> Decision {
    let mut trace = Vec::new();
    let decision = match rules.rule {
        RuleKind::Nobody => {
            trace.push("rule nobody".to_owned());
            None
        }
        RuleKind::UsersAndTeams => round_robin(rules, snapshot, &mut trace),
        RuleKind::ContactOwner => by_owner(rules, snapshot, owner, &mut trace),
    };
    let (assignee, picked_by_rotation) = match decision {
        Some((user, rotated)) => (Some(user.clone()), rotated.then_some(user)),
        None => {
            trace.push("unassigned".to_owned());
            (None, None)
        }
    };
    Decision {
        assignee,
        trace: trace.join("; "),
        picked_by_rotation,
    }
}

/// The contact's owner, or the fallback when the owner cannot take the ticket.
fn by_owner(
    rules: &ChannelRouting,
    snapshot: &Snapshot,
    owner: Option<&str>,
    trace: &mut Vec<String>,
) -> Option<(String, bool)> {
    match owner {
        None => trace.push("contact has no owner".to_owned()),
        Some(owner) => match ineligible(rules, snapshot, owner) {
            None => {
                trace.push(format!("contact owner {owner}"));
                return Some((owner.to_owned(), false));
            }
            Some(why) => trace.push(format!("owner {why}")),
        },
    }
    if !rules.fallback_to_users_and_teams || (rules.users.is_empty() && rules.teams.is_empty()) {
        trace.push("no fallback".to_owned());
        return None;
    }
    trace.push(format!("fallback {}", describe_pool(rules)));
    round_robin(rules, snapshot, trace)
}

/// The next eligible user after the last one picked, in the order of the pool.
fn round_robin(
    rules: &ChannelRouting,
    snapshot: &Snapshot,
    trace: &mut Vec<String>,
) -> Option<(String, bool)> {
    let pool = pool(rules, snapshot);
    if pool.is_empty() {
        trace.push("no users in the pool".to_owned());
        return None;
    }
    let start = snapshot
        .last_picked
        .as_deref()
        .and_then(|last| pool.iter().position(|u| u == last))
        .map_or(0, |i| i + 1);
    let mut skipped = Vec::new();
    for offset in 0..pool.len() {
        let user = &pool[(start + offset) % pool.len()];
        match ineligible(rules, snapshot, user) {
            None => {
                trace.extend(summarise(skipped));
                trace.push(format!("round robin picked {user}"));
                return Some((user.clone(), true));
            }
            Some(why) => skipped.push(why),
        }
    }
    trace.extend(summarise(skipped));
    trace.push("nobody eligible".to_owned());
    None
}

/// At most three reasons, so that a trace stays short.
fn summarise(skipped: Vec<String>) -> Option<String> {
    const SHOWN: usize = 3;
    if skipped.is_empty() {
        return None;
    }
    let more = skipped.len().saturating_sub(SHOWN);
    let mut text = skipped
        .into_iter()
        .take(SHOWN)
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more skipped"));
    }
    Some(text)
}

/// The users of the rule's list, then each team's members by id, each once.
fn pool(rules: &ChannelRouting, snapshot: &Snapshot) -> Vec<String> {
    let mut pool: Vec<String> = Vec::new();
    let mut add = |user: &String| {
        if !pool.contains(user) {
            pool.push(user.clone());
        }
    };
    rules.users.iter().for_each(&mut add);
    for team in &rules.teams {
        snapshot
            .users
            .iter()
            .filter(|(_, u)| u.teams.contains(team))
            .for_each(|(id, _)| add(id));
    }
    pool
}

fn describe_pool(rules: &ChannelRouting) -> String {
    let list = |what: &str, names: &[String]| match names.len() {
        0 => None,
        1 => Some(format!("{what} {}", names[0])),
        _ => Some(format!("{what}s {}", names.join(", "))),
    };
    [list("user", &rules.users), list("team", &rules.teams)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Why a user cannot take a ticket now, as a trace phrase; `None` when they can.
fn ineligible(rules: &ChannelRouting, snapshot: &Snapshot, id: &str) -> Option<String> {
    let Some(user) = snapshot.users.get(id) else {
        return Some(format!("{id} is unknown"));
    };
    if !user.seat {
        return Some(format!("{id} has no seat"));
    }
    if rules.available_only && user.availability != Availability::Available {
        return Some(format!("{id} is {}", user.availability.as_str()));
    }
    let open = snapshot.open_tickets.get(id).copied().unwrap_or(0);
    if rules.max_open_tickets > 0 && open >= u64::from(rules.max_open_tickets) {
        return Some(format!("{id} is at capacity ({open} open)"));
    }
    None
}
