//! Which pipelines and statuses stored tickets are in, so that a config change cannot strand
//! them: check-config (given the state directory) and a reload refuse to remove or rename a
//! pipeline or status that tickets still use, and say how many.

use std::collections::BTreeMap;

use super::state::TicketState;
use crate::config::{Config, ConfigProblem};
use crate::store::{keys, Store, StoreError};

/// Tickets per pipeline and status (`None`: a ticket without a status), ticketless ones left out.
pub type Usage = BTreeMap<String, BTreeMap<Option<String>, u64>>;

/// Counts the tickets of the mirror by pipeline and status.
pub fn pipeline_usage(store: &Store) -> Result<Usage, StoreError> {
    const PAGE: usize = 4096;
    let prefix = keys::routing("ticket/");
    let mut usage = Usage::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page: Vec<(Vec<u8>, TicketState)> =
            store.state_scan(&prefix, after.as_deref(), PAGE)?;
        for (_, state) in &page {
            if let (Some(pipeline), false) = (&state.pipeline, state.ticketless) {
                let statuses = usage.entry(pipeline.clone()).or_default();
                *statuses.entry(state.status.clone()).or_default() += 1;
            }
        }
        match page.last() {
            Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
            _ => return Ok(usage),
        }
    }
}

/// What `config` would strand: each removed pipeline, and each removed status, that tickets
/// still use, with how many.
pub fn stranded(config: &Config, usage: &Usage) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for (pipeline, statuses) in usage {
        let total: u64 = statuses.values().sum();
        let Some(configured) = config.routing.pipelines.get(pipeline) else {
            problems.push(ConfigProblem {
                path: format!("routing.pipelines.{pipeline}"),
                message: format!(
                    "is gone, but {total} stored tickets are in it: keep it, or first move \
                     them (PUT /v1/control/tickets/{{id}}/pipeline)"
                ),
            });
            continue;
        };
        for (status, count) in statuses {
            let Some(status) = status else { continue };
            if !configured.statuses.iter().any(|s| &s.id == status) {
                problems.push(ConfigProblem {
                    path: format!("routing.pipelines.{pipeline}.statuses"),
                    message: format!(
                        "status {status:?} is gone, but {count} stored tickets are in it: keep \
                         it, or first move them (PUT /v1/control/tickets/{{id}}/status)"
                    ),
                });
            }
        }
    }
    problems
}
