//! Routing: who works on a new ticket, decided from what it is given. It reads no storage and
//! sends nothing; [`crate::tickets`] gathers its inputs from state and records its decisions.
//!
//! - [`decide`]: the assignment decision, a pure function of the channel's rule, a directory
//!   snapshot and the contact's owner, with a short human trace.
//! - [`DirectoryState`]: the control API's changes to the directory, and [`snapshot_from`],
//!   which overlays them on the config's users.
//! - [`RuleSet`]: the routing part of the config compiled once at start-up (channels' ticket
//!   options and rules, pipelines, the directory's base).

mod availability;
mod decide;
mod directory;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::config::{
    ChannelRouting, ChannelTickets, Config, Hours, PipelineConfig, TeamConfig, UserConfig,
};

pub use availability::{availability, ChannelAvailability};
pub use decide::{decide, Availability, Decision, Snapshot, User};
pub use directory::{directory_users, snapshot_from, DirectoryState};

/// A channel's ticket options with the defaults filled in.
#[derive(Debug, Clone)]
pub struct ChannelRules {
    pub create: bool,
    pub pipeline: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub category: Option<String>,
    pub routing: ChannelRouting,
    /// Chat and Messenger conversations: triggers and actions skip them unless a pipeline or
    /// an action includes them.
    pub chat: bool,
    /// A form channel's `[form] defaults` (pipeline, status, priority, category), which come
    /// after a submitted value and before the channel's own ticket defaults.
    pub form_defaults: BTreeMap<String, String>,
    /// A chat channel's office hours (`[channels.<id>.chat.hours]`); `None`: always open.
    pub hours: Option<Hours>,
}

/// The routing part of the config, compiled once.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub channels: BTreeMap<String, ChannelRules>,
    pub pipelines: BTreeMap<String, PipelineConfig>,
    pub users: BTreeMap<String, UserConfig>,
    pub teams: BTreeMap<String, TeamConfig>,
    pub spam_retention: Duration,
    /// How long a closed ticket stays in the state before it is forgotten; `None`: for ever.
    pub closed_retention: Option<Duration>,
    /// Messages sent longer than this before they were received are history (see
    /// `routing.history_age_secs`); `None`: nothing is.
    pub history_age: Option<Duration>,
    /// The rules of a channel not in the config (a replayed record from an old config): tickets
    /// in the only pipeline, if there is one, and no routing.
    pub unknown_channel: ChannelRules,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            channels: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            users: BTreeMap::new(),
            teams: BTreeMap::new(),
            spam_retention: Duration::days(90),
            closed_retention: None,
            history_age: None,
            unknown_channel: ChannelRules::unknown(None),
        }
    }
}

impl ChannelRules {
    fn unknown(pipeline: Option<String>) -> ChannelRules {
        ChannelRules {
            create: true,
            pipeline,
            status: None,
            priority: None,
            category: None,
            routing: ChannelTickets::default().routing,
            chat: false,
            form_defaults: BTreeMap::new(),
            hours: None,
        }
    }
}

impl RuleSet {
    /// Compiles a validated config.
    pub fn compile(config: &Config) -> RuleSet {
        let routing = &config.routing;
        let only_pipeline = (routing.pipelines.len() == 1)
            .then(|| routing.pipelines.keys().next().cloned())
            .flatten();
        let channels = config
            .channels
            .iter()
            .map(|(id, channel)| {
                let tickets = channel.tickets.clone().unwrap_or_default();
                let rules = ChannelRules {
                    create: tickets.create,
                    pipeline: tickets.pipeline.clone().or_else(|| only_pipeline.clone()),
                    status: tickets.status.clone(),
                    priority: tickets.priority.clone(),
                    category: tickets.category.clone(),
                    routing: tickets.routing.clone(),
                    chat: channel.kind.is_chat(),
                    form_defaults: channel
                        .form
                        .as_ref()
                        .map(|form| form.defaults.clone())
                        .unwrap_or_default(),
                    // Validated with the config, so compiling cannot fail here.
                    hours: channel
                        .chat
                        .as_ref()
                        .and_then(|chat| chat.hours.as_ref())
                        .and_then(|hours| hours.compile().ok()),
                };
                (id.clone(), rules)
            })
            .collect();
        RuleSet {
            channels,
            pipelines: routing.pipelines.clone(),
            users: routing.users.clone(),
            teams: routing.teams.clone(),
            spam_retention: Duration::days(i64::from(routing.spam_retention_days)),
            closed_retention: (routing.closed_retention_secs > 0)
                .then(|| Duration::seconds(routing.closed_retention_secs as i64)),
            history_age: (routing.history_age_secs > 0)
                .then(|| Duration::seconds(routing.history_age_secs.min(i64::MAX as u64) as i64)),
            unknown_channel: ChannelRules::unknown(only_pipeline),
        }
    }

    /// Why a message is history (an import or a late catch-up), if it is: sent more than
    /// `history_age` before it was received. Decided from the message alone, so a replay
    /// decides the same.
    pub fn history(
        &self,
        sent_at: Option<DateTime<Utc>>,
        received_at: DateTime<Utc>,
    ) -> Option<String> {
        let (limit, sent) = (self.history_age?, sent_at?);
        let age = received_at - sent;
        (age > limit).then(|| {
            format!(
                "sent {} and received {}, more than routing.history_age_secs ({}) later",
                sent.to_rfc3339(),
                received_at.to_rfc3339(),
                limit.num_seconds()
            )
        })
    }

    /// A channel's rules.
    pub fn channel(&self, id: &str) -> &ChannelRules {
        self.channels.get(id).unwrap_or(&self.unknown_channel)
    }
}

#[cfg(test)]
mod tests;
