//! Whether anyone is there to answer a chat channel now, for the widget's question
//! (`GET /v1/channels/{id}/availability`): inside the channel's office hours, and at least one
//! of the users the channel routes to (its users and its teams' members; every user when it
//! names none) holds a seat and is `available`. The answer names no one.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Availability, ChannelRules, Snapshot};

/// The widget's answer: `available`, or `away` with why (so it can say "we'll reply by mail").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum ChannelAvailability {
    Available,
    Away(AwayReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AwayReason {
    OutsideOfficeHours,
    NobodyAvailable,
}

/// The channel's availability at `now`, from its rules and the directory.
pub fn availability(
    rules: &ChannelRules,
    directory: &Snapshot,
    now: DateTime<Utc>,
) -> ChannelAvailability {
    if rules
        .hours
        .as_ref()
        .is_some_and(|hours| !hours.is_open(now))
    {
        return ChannelAvailability::Away(AwayReason::OutsideOfficeHours);
    }
    let routing = &rules.routing;
    let everyone = routing.users.is_empty() && routing.teams.is_empty();
    let someone = directory.users.iter().any(|(id, user)| {
        let routed = everyone
            || routing.users.contains(id)
            || user.teams.iter().any(|team| routing.teams.contains(team));
        routed && user.seat && user.availability == Availability::Available
    });
    if someone {
        ChannelAvailability::Available
    } else {
        ChannelAvailability::Away(AwayReason::NobodyAvailable)
    }
}
