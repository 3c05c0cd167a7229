//! Routing, directory and pipeline options: `[routing]` (users, teams, pipelines, moves of
//! stored tickets out of removed pipelines and statuses, spam and closed-ticket retention) and
//! each channel's `[channels.<id>.tickets]` (whether messages open tickets, the
//! ticket defaults and the routing rule).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{ChannelConfig, ConfigProblem, Problems};

/// The directory of agents and the ticket pipelines.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Agents by id. The control API can add and change users; entries here are the base.
    pub users: BTreeMap<String, UserConfig>,
    /// Teams by id; a user joins teams through its `teams` list.
    pub teams: BTreeMap<String, TeamConfig>,
    /// Ticket pipelines by id.
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Where stored tickets go whose pipeline or status this config removes or renames
    /// (`[[routing.moves]]`); applied once, at start or reload, with an event per ticket.
    pub moves: Vec<MoveConfig>,
    /// Conversations marked as spam are purged from deskgate's state after this many days.
    pub spam_retention_days: u32,
    /// A ticket closed this many seconds ago is forgotten: its mirror, conversations, thread
    /// indexes and outgoing messages leave deskgate's state, and a later message on one of
    /// its threads opens a new ticket (the ticket store keeps the old one). 0 keeps closed
    /// tickets for ever, and the state then grows with every ticket ever opened.
    pub closed_retention_secs: u64,
    /// A message sent (by its own Date or platform timestamp) more than this long before
    /// deskgate received it is history: an import, a mailbox catching up, an MTA pushing old
    /// mail. It opens or joins tickets and contacts like any other, but sends no automatic mail
    /// and fires no status trigger or action; its event says `imported`. 0 treats nothing as
    /// history.
    pub history_age_secs: u64,
}

/// The default of `routing.closed_retention_secs`: a year. A chosen bound, not a measured one:
/// a reply to a ticket closed longer ago than this opens a new ticket.
pub const DEFAULT_CLOSED_RETENTION_SECS: u64 = 365 * 24 * 3600;

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            users: BTreeMap::new(),
            teams: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            moves: Vec::new(),
            spam_retention_days: 90,
            closed_retention_secs: DEFAULT_CLOSED_RETENTION_SECS,
            history_age_secs: 24 * 3600,
        }
    }
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Display name.
    pub name: String,
    /// Where internal notifications to this user go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Only users holding a seat can be assigned tickets.
    #[serde(default = "yes")]
    pub seat: bool,
    /// The teams this user belongs to.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Availability until the control API says otherwise (`PUT .../availability`, which
    /// persists across restarts and reloads and wins over this). Default `available`: a user
    /// listed here with a seat is meant to take tickets from the first message, and routing
    /// with `available_only` would otherwise assign nobody until every agent's client has
    /// called the API.
    #[serde(default, skip_serializing_if = "StartingAvailability::is_default")]
    pub availability: StartingAvailability,
}

/// A configured user's availability before any control API call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartingAvailability {
    #[default]
    Available,
    Away,
    Offline,
}

impl StartingAvailability {
    fn is_default(&self) -> bool {
        *self == StartingAvailability::Available
    }
}

/// One team.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamConfig {
    /// Display name.
    pub label: String,
}

/// One ticket pipeline: ordered statuses, triggers and status-reached actions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Display name.
    pub label: String,
    /// Statuses in order; the first open one is the default for new tickets.
    pub statuses: Vec<StatusConfig>,
    /// Status triggers.
    #[serde(default)]
    pub triggers: TriggersConfig,
    /// What a customer message on a closed ticket's conversation does.
    #[serde(default)]
    pub closed_reply: ClosedReply,
    /// Actions decided when a ticket enters a status.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
}

/// Where the stored tickets of a removed or renamed pipeline or status go
/// (`[[routing.moves]]`). The `from` location must be gone from the config: a move of a
/// location that still exists would keep taking new tickets out of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveConfig {
    /// The pipeline the tickets are in.
    pub from_pipeline: String,
    /// The status they are in; unset: every status of `from_pipeline` (which must then be
    /// gone). A move of a status wins over a move of its whole pipeline.
    #[serde(default)]
    pub from_status: Option<String>,
    /// The pipeline they go to (configured).
    pub to_pipeline: String,
    /// The status of `to_pipeline` they go to; its actions run as for any status reached.
    pub to_status: String,
}

/// One status of a pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// The id used in the control API, in events and in other options.
    pub id: String,
    /// Display name.
    pub label: String,
    /// Whether a ticket in this status is open (counts as work) or closed.
    pub open: bool,
}

/// The two status triggers of a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggersConfig {
    /// A customer replied on the ticket's thread. Default target: `waiting_on_us`.
    pub customer_replied: TriggerConfig,
    /// An agent's reply was sent from the ticket. Default target: `waiting_on_contact`.
    pub agent_emailed: TriggerConfig,
    /// Whether chat and Messenger conversations fire triggers too.
    pub include_chat: bool,
}

/// One status trigger.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerConfig {
    /// Switch the trigger off with `false`.
    pub enabled: bool,
    /// The status the ticket moves to; unset means the trigger's default status id.
    pub target: Option<String>,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            enabled: true,
            target: None,
        }
    }
}

/// What a customer message on a closed ticket's conversation does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedReply {
    /// Reopen the ticket (and fire `customer_replied`).
    #[default]
    Reopen,
    /// Open a new ticket for the conversation.
    NewTicket,
}

/// An action decided when a ticket enters a status.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The status whose entry triggers the action.
    pub status: String,
    /// `acknowledge` (mail to the customer) or `notify` (internal mail).
    pub action: ActionKind,
    /// The template to render, such as `ticket_received` or `ticket_closed`.
    pub template: String,
    /// For `notify`: users to notify.
    #[serde(default)]
    pub users: Vec<String>,
    /// For `notify`: teams whose members are notified.
    #[serde(default)]
    pub teams: Vec<String>,
    /// For `notify`: notify the ticket's owner.
    #[serde(default)]
    pub owner: bool,
    /// Whether the action runs for chat and Messenger conversations too.
    #[serde(default)]
    pub include_chat: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Acknowledge,
    Notify,
}

/// A channel's ticket options (`[channels.<id>.tickets]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelTickets {
    /// Whether messages open tickets; when off they reach the ticket store as conversation
    /// events without a ticket.
    pub create: bool,
    /// The pipeline of new tickets; unset: the only pipeline when there is exactly one.
    pub pipeline: Option<String>,
    /// The status of new tickets; unset: the pipeline's first open status.
    pub status: Option<String>,
    /// Default priority of new tickets.
    pub priority: Option<String>,
    /// Default category of new tickets.
    pub category: Option<String>,
    /// Who new tickets are assigned to.
    pub routing: ChannelRouting,
}

impl Default for ChannelTickets {
    fn default() -> Self {
        ChannelTickets {
            create: true,
            pipeline: None,
            status: None,
            priority: None,
            category: None,
            routing: ChannelRouting::default(),
        }
    }
}

/// A channel's routing rule (`[channels.<id>.tickets.routing]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelRouting {
    /// `nobody`, `users_and_teams` or `contact_owner`.
    pub rule: RuleKind,
    /// Users eligible under `users_and_teams` (and as `contact_owner`'s fallback).
    pub users: Vec<String>,
    /// Teams whose members are eligible under `users_and_teams`.
    pub teams: Vec<String>,
    /// For `contact_owner`: fall back to the users and teams above when the owner cannot take
    /// the ticket; otherwise leave it unassigned.
    pub fallback_to_users_and_teams: bool,
    /// Only users whose availability is `available` are eligible.
    pub available_only: bool,
    /// Skip users who already hold this many open tickets; 0 means no limit.
    pub max_open_tickets: u32,
}

impl Default for ChannelRouting {
    fn default() -> Self {
        ChannelRouting {
            rule: RuleKind::Nobody,
            users: Vec::new(),
            teams: Vec::new(),
            fallback_to_users_and_teams: true,
            available_only: true,
            max_open_tickets: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    #[default]
    Nobody,
    UsersAndTeams,
    ContactOwner,
}

fn yes() -> bool {
    true
}

/// The default target of `customer_replied`.
pub const CUSTOMER_REPLIED_TARGET: &str = "waiting_on_us";
/// The default target of `agent_emailed`.
pub const AGENT_EMAILED_TARGET: &str = "waiting_on_contact";

impl RoutingConfig {
    /// Every problem in the directory, the pipelines and the channels' ticket options.
    pub fn validate(&self, channels: &BTreeMap<String, ChannelConfig>) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        if self.spam_retention_days == 0 {
            problems.push("routing.spam_retention_days", "must be > 0");
        }
        let names = self.users.keys().map(|id| ("users", id));
        let names = names.chain(self.teams.keys().map(|id| ("teams", id)));
        for (kind, id) in names.chain(self.pipelines.keys().map(|id| ("pipelines", id))) {
            if !super::is_valid_name(id) {
                problems.push(
                    format!("routing.{kind}.{id}"),
                    "ids must be 1-64 characters of a-z, 0-9, '-' and '_'",
                );
            }
        }
        for (id, user) in &self.users {
            for (i, team) in user.teams.iter().enumerate() {
                if !self.teams.contains_key(team) {
                    problems.push(
                        format!("routing.users.{id}.teams[{i}]"),
                        format!("unknown team {team:?}"),
                    );
                }
            }
        }
        for (id, pipeline) in &self.pipelines {
            self.validate_pipeline(id, pipeline, &mut problems);
        }
        self.validate_moves(&mut problems);
        for (id, channel) in channels {
            if let Some(tickets) = &channel.tickets {
                self.validate_channel(id, tickets, &mut problems);
            }
            self.validate_form_defaults(id, channel, &mut problems);
        }
        problems.into_vec()
    }

    /// A form's `defaults` must name a pipeline that exists and a status of the pipeline its
    /// tickets open in (the form's own default, else the channel's, else the only one).
    fn validate_form_defaults(&self, id: &str, channel: &ChannelConfig, problems: &mut Problems) {
        let Some(defaults) = channel.form.as_ref().map(|f| &f.defaults) else {
            return;
        };
        let base = format!("channels.{id}.form.defaults");
        let own = channel.tickets.as_ref().and_then(|t| t.pipeline.as_ref());
        let only = (self.pipelines.len() == 1)
            .then(|| self.pipelines.keys().next())
            .flatten();
        let name = defaults.get("pipeline").or(own).or(only);
        let pipeline = name.and_then(|n| self.pipelines.get(n));
        if let (Some(name), None) = (defaults.get("pipeline"), pipeline) {
            problems.push(
                format!("{base}.pipeline"),
                format!("unknown pipeline {name:?}"),
            );
            return;
        }
        let Some(status) = defaults.get("status") else {
            return;
        };
        match (name, pipeline) {
            (Some(name), Some(pipeline)) if !pipeline.statuses.iter().any(|s| &s.id == status) => {
                problems.push(
                    format!("{base}.status"),
                    format!("{status:?} is not a status of pipeline {name:?}"),
                )
            }
            (None, _) => problems.push(
                format!("{base}.status"),
                format!("no pipeline: set channels.{id}.tickets.pipeline or defaults.pipeline"),
            ),
            _ => {}
        }
    }

    /// Each move goes to a configured status, comes from a pipeline or status the config no
    /// longer has, and no two moves take the same location.
    fn validate_moves(&self, problems: &mut Problems) {
        for (i, m) in self.moves.iter().enumerate() {
            let path = format!("routing.moves[{i}]");
            match self.pipelines.get(&m.to_pipeline) {
                None => problems.push(
                    format!("{path}.to_pipeline"),
                    format!("unknown pipeline {:?}", m.to_pipeline),
                ),
                Some(to) if !to.statuses.iter().any(|s| s.id == m.to_status) => problems.push(
                    format!("{path}.to_status"),
                    format!(
                        "{:?} is not a status of pipeline {:?}",
                        m.to_status, m.to_pipeline
                    ),
                ),
                Some(_) => {}
            }
            let from = self.pipelines.get(&m.from_pipeline);
            match (&m.from_status, from) {
                (None, Some(_)) => problems.push(
                    format!("{path}.from_pipeline"),
                    format!(
                        "pipeline {:?} still exists: a move is for a pipeline the config \
                         removed or renamed (it would keep moving new tickets); name a \
                         removed status with from_status, or remove the pipeline",
                        m.from_pipeline
                    ),
                ),
                (Some(status), Some(from)) if from.statuses.iter().any(|s| &s.id == status) => {
                    problems.push(
                        format!("{path}.from_status"),
                        format!(
                            "status {status:?} of pipeline {:?} still exists: a move is for a \
                             status the config removed or renamed (it would keep moving new \
                             tickets)",
                            m.from_pipeline
                        ),
                    )
                }
                _ => {}
            }
            let same = |other: &MoveConfig| {
                other.from_pipeline == m.from_pipeline && other.from_status == m.from_status
            };
            if let Some(j) = self.moves[..i].iter().position(same) {
                problems.push(
                    path,
                    format!("moves the same tickets as routing.moves[{j}]"),
                );
            }
        }
    }

    fn validate_pipeline(&self, id: &str, pipeline: &PipelineConfig, problems: &mut Problems) {
        let base = format!("routing.pipelines.{id}");
        let statuses: BTreeSet<&str> = pipeline.statuses.iter().map(|s| s.id.as_str()).collect();
        if statuses.len() != pipeline.statuses.len() {
            problems.push(format!("{base}.statuses"), "status ids must be unique");
        }
        if !pipeline.statuses.iter().any(|s| s.open) {
            problems.push(format!("{base}.statuses"), "needs at least one open status");
        }
        if !pipeline.statuses.iter().any(|s| !s.open) {
            problems.push(
                format!("{base}.statuses"),
                "needs at least one closed status",
            );
        }
        let triggers = [
            (
                "customer_replied",
                &pipeline.triggers.customer_replied,
                CUSTOMER_REPLIED_TARGET,
            ),
            (
                "agent_emailed",
                &pipeline.triggers.agent_emailed,
                AGENT_EMAILED_TARGET,
            ),
        ];
        for (name, trigger, default) in triggers {
            let target = trigger.target.as_deref().unwrap_or(default);
            if trigger.enabled && !statuses.contains(target) {
                let how = if trigger.target.is_some() {
                    "unknown status"
                } else {
                    "unset, and the pipeline has no default status"
                };
                problems.push(
                    format!("{base}.triggers.{name}.target"),
                    format!("{how} {target:?}"),
                );
            }
        }
        for (i, action) in pipeline.actions.iter().enumerate() {
            let path = format!("{base}.actions[{i}]");
            if !statuses.contains(action.status.as_str()) {
                problems.push(
                    format!("{path}.status"),
                    format!("unknown status {:?}", action.status),
                );
            }
            self.check_names(&path, &action.users, &action.teams, problems);
            let has_recipient = !action.users.is_empty() || !action.teams.is_empty();
            if action.action == ActionKind::Notify && !has_recipient && !action.owner {
                problems.push(path, "a notify action needs users, teams or owner = true");
            }
        }
    }

    fn validate_channel(&self, id: &str, tickets: &ChannelTickets, problems: &mut Problems) {
        let base = format!("channels.{id}.tickets");
        let pipeline = match &tickets.pipeline {
            Some(name) => match self.pipelines.get(name) {
                Some(pipeline) => Some(pipeline),
                None => {
                    problems.push(
                        format!("{base}.pipeline"),
                        format!("unknown pipeline {name:?}"),
                    );
                    None
                }
            },
            None if self.pipelines.len() == 1 => self.pipelines.values().next(),
            None => {
                if tickets.create && !self.pipelines.is_empty() {
                    problems.push(
                        format!("{base}.pipeline"),
                        "must be set when several pipelines are configured",
                    );
                }
                None
            }
        };
        if let (Some(status), Some(pipeline)) = (&tickets.status, pipeline) {
            if !pipeline.statuses.iter().any(|s| &s.id == status) {
                problems.push(
                    format!("{base}.status"),
                    format!("unknown status {status:?}"),
                );
            }
        } else if tickets.status.is_some() && self.pipelines.is_empty() {
            problems.push(format!("{base}.status"), "no pipeline is configured");
        }
        let routing = &tickets.routing;
        let path = format!("{base}.routing");
        self.check_names(&path, &routing.users, &routing.teams, problems);
        if routing.rule == RuleKind::UsersAndTeams
            && routing.users.is_empty()
            && routing.teams.is_empty()
        {
            problems.push(path, "users_and_teams needs at least one user or team");
        }
    }

    fn check_names(&self, path: &str, users: &[String], teams: &[String], problems: &mut Problems) {
        for (i, user) in users.iter().enumerate() {
            if !self.users.contains_key(user) {
                problems.push(
                    format!("{path}.users[{i}]"),
                    format!("unknown user {user:?}"),
                );
            }
        }
        for (i, team) in teams.iter().enumerate() {
            if !self.teams.contains_key(team) {
                problems.push(
                    format!("{path}.teams[{i}]"),
                    format!("unknown team {team:?}"),
                );
            }
        }
    }
}
