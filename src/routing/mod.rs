//! Routing, pipelines and status triggers: who works on a ticket and which status it is in.
//!
//! - [`decide`]: the assignment decision, a pure function of the channel's rule, a directory
//!   snapshot and the contact's owner, with a short human trace.
//! - [`RuleSet`]: the config compiled once at start-up (channels' ticket options, pipelines,
//!   the directory's base).
//! - `messages`: the processor's routing step after threading (new tickets get their pipeline,
//!   status and owner; replies fire `customer_replied`; closed tickets reopen or spawn a new one).
//! - `control`: control API mutations (directory, ticket status, merge, split, delete, spam),
//!   journaled as [`crate::model::Record::Control`] and applied here in journal order.
//! - `state`: what routing keeps in the state tree (directory changes, ticket mirror status and
//!   owner, conversation bookkeeping, rotations, open-ticket counts).

mod control;
mod decide;
mod messages;
mod state;
mod tickets;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::config::{
    ChannelConfig, ChannelRouting, ChannelTickets, Config, PipelineConfig, TeamConfig, UserConfig,
};
use crate::events::{EventDraft, EventType, OutboxWriter};
use crate::ids::Minter;
use crate::store::StateBatch;

pub use control::apply_control;
pub use decide::{decide, Availability, Decision, Snapshot, User};
pub use messages::{after_threading, Routed};
pub use state::{directory_snapshot, ticket_view, ConversationState, Outcome, TicketState};

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
}

/// The routing part of the config, compiled once.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub channels: BTreeMap<String, ChannelRules>,
    pub pipelines: BTreeMap<String, PipelineConfig>,
    pub users: BTreeMap<String, UserConfig>,
    pub teams: BTreeMap<String, TeamConfig>,
    pub spam_retention: Duration,
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
                    chat: is_chat(channel),
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
            unknown_channel: ChannelRules::unknown(only_pipeline),
        }
    }

    /// A channel's rules.
    pub fn channel(&self, id: &str) -> &ChannelRules {
        self.channels.get(id).unwrap_or(&self.unknown_channel)
    }
}

/// Chat and Messenger channels. Matched on the kind's name so that kinds added by other work
/// (`chat`, `messenger`, `meta`) are recognised without this module naming every variant.
fn is_chat(channel: &ChannelConfig) -> bool {
    let kind = format!("{:?}", channel.kind).to_ascii_lowercase();
    ["chat", "messenger", "meta"]
        .iter()
        .any(|name| kind.contains(name))
}

/// One record's routing work: the batch, the rules, and the events it produces in order.
pub(crate) struct Step<'s, 'b> {
    pub batch: &'s mut StateBatch<'b>,
    pub rules: &'s RuleSet,
    pub minter: &'s Minter,
    pub at: DateTime<Utc>,
    pub events: Vec<EventDraft>,
}

impl Step<'_, '_> {
    fn emit(&mut self, event_type: EventType, subject: &str, channel: Option<&str>, data: Value) {
        self.events.push(EventDraft {
            event_type,
            subject: subject.to_owned(),
            channel: channel.map(str::to_owned),
            data,
        });
    }
}

/// Pushes a step's events into the outbox, in order.
pub fn push_events(
    outbox: &OutboxWriter,
    batch: &mut StateBatch<'_>,
    at: DateTime<Utc>,
    events: &[EventDraft],
) -> Result<(), crate::store::StoreError> {
    for event in events {
        outbox.push(batch, at, event)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
