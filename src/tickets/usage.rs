//! Which pipelines and statuses stored tickets are in, so that a config change cannot strand
//! them: check-config (given the state directory), a start and a reload refuse to remove or
//! rename a pipeline or status that tickets still use, and say how many, unless the config's
//! `[[routing.moves]]` say where those tickets go ([`moves_due`] tells whether any must).

use std::collections::BTreeMap;

use crate::config::{Config, ConfigProblem};
use crate::model::{PipelineMove, Ticket};
use crate::store::{keys, Store, StoreError};

/// Tickets per pipeline and status (`None`: a ticket without a status), ticketless ones left out.
pub type Usage = BTreeMap<String, BTreeMap<Option<String>, u64>>;

/// Counts the tickets of the mirror by pipeline and status.
pub fn pipeline_usage(store: &Store) -> Result<Usage, StoreError> {
    const PAGE: usize = 4096;
    let prefix = keys::ticket("");
    // An older version's state (check-config reads it before any start folded it).
    let unfolded = super::fold::unfolded_routing(store)?;
    let mut usage = Usage::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page: Vec<(Vec<u8>, Ticket)> = store.state_scan(&prefix, after.as_deref(), PAGE)?;
        for (key, ticket) in &page {
            let id = String::from_utf8_lossy(&key[prefix.len()..]);
            let state = unfolded.get(id.as_ref()).unwrap_or(&ticket.routing);
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

/// The config's moves, as journaled.
pub fn moves_of(config: &Config) -> Vec<PipelineMove> {
    config
        .routing
        .moves
        .iter()
        .map(|m| PipelineMove {
            from_pipeline: m.from_pipeline.clone(),
            from_status: m.from_status.clone(),
            to_pipeline: m.to_pipeline.clone(),
            to_status: m.to_status.clone(),
        })
        .collect()
}

/// How many stored tickets sit where one of `moves` takes them from.
pub fn moves_due(moves: &[PipelineMove], usage: &Usage) -> u64 {
    let mut due = 0;
    for (pipeline, statuses) in usage {
        for (status, count) in statuses {
            if PipelineMove::find(moves, pipeline, status.as_deref()).is_some() {
                due += count;
            }
        }
    }
    due
}

/// What `config` would strand: each removed pipeline, and each removed status, that tickets
/// still use, with how many; tickets that one of its moves takes count for nothing.
pub fn stranded(config: &Config, usage: &Usage) -> Vec<ConfigProblem> {
    let moves = moves_of(config);
    let mut problems = Vec::new();
    for (pipeline, statuses) in usage {
        let unmoved = |status: &Option<String>| {
            PipelineMove::find(&moves, pipeline, status.as_deref()).is_none()
        };
        let Some(configured) = config.routing.pipelines.get(pipeline) else {
            let total: u64 = statuses
                .iter()
                .filter(|(status, _)| unmoved(status))
                .map(|(_, count)| count)
                .sum();
            if total > 0 {
                problems.push(ConfigProblem {
                    path: format!("routing.pipelines.{pipeline}"),
                    message: format!(
                        "is gone, but {total} stored tickets are in it: keep it, first move \
                         them (PUT /v1/control/tickets/{{id}}/pipeline), or say where they go \
                         ([[routing.moves]])"
                    ),
                });
            }
            continue;
        };
        for (status, count) in statuses {
            let Some(name) = status else { continue };
            if !configured.statuses.iter().any(|s| &s.id == name) && unmoved(status) {
                problems.push(ConfigProblem {
                    path: format!("routing.pipelines.{pipeline}.statuses"),
                    message: format!(
                        "status {name:?} is gone, but {count} stored tickets are in it: keep \
                         it, first move them (PUT /v1/control/tickets/{{id}}/status), or say \
                         where they go ([[routing.moves]])"
                    ),
                });
            }
        }
    }
    problems
}
