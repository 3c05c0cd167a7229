//! What a valid config promises but cannot keep: warnings, with their paths, that
//! `check-config` prints and the daemon logs at start-up and reload. A warning never stops
//! deskgate; the same condition at run time ends in a `deskgate.outbound.suppressed` event.

use super::{ActionKind, ChannelConfig, Config, ConfigProblem};

impl Config {
    /// Pipeline actions that can never be sent for a channel whose tickets use them: automatic
    /// mail goes out only from a mailbox that lists the channel.
    pub fn warnings(&self) -> Vec<ConfigProblem> {
        let mut warnings = Vec::new();
        let only_pipeline = (self.routing.pipelines.len() == 1)
            .then(|| self.routing.pipelines.keys().next())
            .flatten();
        for (id, channel) in &self.channels {
            let tickets = channel.tickets.clone().unwrap_or_default();
            if !tickets.create {
                continue;
            }
            let mailed = self
                .outbound
                .mailboxes
                .values()
                .any(|m| m.channels.contains(id));
            let pipelines = channel_pipelines(channel, tickets.pipeline.as_ref(), only_pipeline);
            for name in pipelines {
                let Some(pipeline) = self.routing.pipelines.get(name) else {
                    continue;
                };
                for (i, action) in pipeline.actions.iter().enumerate() {
                    if mailed || (channel.kind.is_chat() && !action.include_chat) {
                        continue;
                    }
                    let kind = match action.action {
                        ActionKind::Acknowledge => "acknowledge",
                        ActionKind::Notify => "notify",
                    };
                    warnings.push(ConfigProblem {
                        path: format!("routing.pipelines.{name}.actions[{i}]"),
                        message: format!(
                            "{kind} mail {:?} can never be sent for channel {id:?}, whose tickets \
                             use this pipeline: no [outbound.mailboxes.*] lists {id:?} in \
                             `channels` (each such ticket gets deskgate.outbound.suppressed)",
                            action.template
                        ),
                    });
                }
            }
        }
        warnings
    }
}

/// The pipelines a channel's tickets can be in: its own (or the only one), and for a form the
/// pipeline its defaults name.
fn channel_pipelines<'c>(
    channel: &'c ChannelConfig,
    own: Option<&'c String>,
    only: Option<&'c String>,
) -> Vec<&'c String> {
    let mut names: Vec<&String> = own.or(only).into_iter().collect();
    let form_default = channel
        .form
        .as_ref()
        .and_then(|form| form.defaults.get("pipeline"));
    if let Some(name) = form_default {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}
