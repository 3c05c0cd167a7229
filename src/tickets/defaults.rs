//! The properties a new ticket opens with. Each comes from the first of: the message's own
//! ticket properties (a form's submitted or hidden field, `extra.ticket`), the form channel's
//! `[form] defaults`, the channel's `[tickets]` defaults, and for the status the pipeline's first
//! open status. A value that names no pipeline, or no status of the chosen pipeline, never
//! loses the message: it is ignored, the ticket event says which field and why, and
//! `deskgate_form_fields_ignored_total` counts it.

use serde_json::{Map, Value};

use crate::events::data::IgnoredProperty;
use crate::routing::{ChannelRules, RuleSet};

/// What a new ticket opens with.
#[derive(Debug, Default)]
pub(super) struct Opening {
    pub pipeline: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub category: Option<String>,
    /// Each value given and not used, with why.
    pub ignored: Vec<IgnoredProperty>,
}

/// Decides a new ticket's pipeline, status, priority and category on a channel.
pub(super) fn opening(
    rules: &RuleSet,
    channel: &ChannelRules,
    given: Option<&Map<String, Value>>,
) -> Opening {
    let mut opening = Opening::default();
    let asked = |field: &str| -> Vec<String> {
        let submitted = given
            .and_then(|t| t.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut values: Vec<String> = submitted.into_iter().collect();
        if let Some(default) = channel.form_defaults.get(field) {
            if !values.contains(default) {
                values.push(default.clone());
            }
        }
        values
    };
    let ignore = |opening: &mut Opening, field: &str, value: &str, reason: String| {
        opening.ignored.push(IgnoredProperty {
            field: field.to_owned(),
            value: value.to_owned(),
            reason,
        });
    };
    for value in asked("pipeline") {
        if rules.pipelines.contains_key(&value) {
            opening.pipeline = Some(value);
            break;
        }
        let reason = format!("no pipeline {value:?} is configured");
        ignore(&mut opening, "pipeline", &value, reason);
    }
    if opening.pipeline.is_none() {
        opening.pipeline = channel.pipeline.clone();
    }
    let chosen = opening.pipeline.clone();
    let pipeline = chosen
        .as_deref()
        .and_then(|p| rules.pipelines.get(p).map(|config| (p, config)));
    if let Some((name, config)) = pipeline {
        let known = |status: &str| config.statuses.iter().any(|s| s.id == status);
        for value in asked("status") {
            if known(&value) {
                opening.status = Some(value);
                break;
            }
            let reason = format!("{value:?} is not a status of pipeline {name:?}");
            ignore(&mut opening, "status", &value, reason);
        }
        // The channel's default status belongs to its own pipeline; a form may have chosen
        // another, where it may not exist.
        opening.status = opening
            .status
            .take()
            .or_else(|| channel.status.clone().filter(|s| known(s)))
            .or_else(|| {
                config
                    .statuses
                    .iter()
                    .find(|s| s.open)
                    .map(|s| s.id.clone())
            });
    } else {
        opening.status = channel.status.clone();
    }
    opening.priority = asked("priority")
        .into_iter()
        .next()
        .or_else(|| channel.priority.clone());
    opening.category = asked("category")
        .into_iter()
        .next()
        .or_else(|| channel.category.clone());
    opening
}
