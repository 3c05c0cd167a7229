//! The config's moves of stored tickets: a start refuses a config that strands tickets (a
//! removed pipeline or status with no move), and journals the moves that apply, at the start
//! and after each reload, for the processor to apply in journal order.

use anyhow::Context;
use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Tasks;
use crate::config::{Config, ConfigProblem};
use crate::journal;
use crate::model::{ControlCommand, ControlRecord, PipelineMove, Record};
use crate::store::Store;

/// Journals `config`'s moves that apply now, before anything is served (so that what they
/// emit is the first thing the processor applies after what was journaled before the start),
/// then those of each config a reload sends on the returned sender.
pub(super) async fn start(
    config: &Config,
    store: &Store,
    journal: &journal::JournalHandle,
    tasks: &Tasks,
) -> watch::Sender<Vec<PipelineMove>> {
    let (moves, moves_rx) = watch::channel(crate::tickets::moves_of(config));
    journal_moves_logged(store, journal, moves.borrow().clone()).await;
    tasks.tracker.spawn(journal_moves(
        store.clone(),
        journal.clone(),
        moves_rx,
        tasks.shutdown.clone(),
    ));
    moves
}

/// A config that would strand stored tickets: refused at start, as check-config (given the
/// state) and a reload refuse it, since a restart after editing the config is as common as a
/// reload.
#[derive(Debug, thiserror::Error)]
#[error("the config would strand stored tickets:{}",
    .0.iter().map(|p| format!("\n  {p}")).collect::<String>())]
pub struct Stranding(pub Vec<ConfigProblem>);

/// Fails with [`Stranding`] when `config` removes a pipeline or status that stored tickets are
/// in and no move of it says where they go.
pub(super) async fn refuse_stranding(config: &Config, store: &Store) -> anyhow::Result<()> {
    let scan = store.clone();
    let usage = tokio::task::spawn_blocking(move || crate::tickets::pipeline_usage(&scan))
        .await?
        .context("reading the stored tickets' pipelines")?;
    let problems = crate::tickets::stranded(config, &usage);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Stranding(problems).into())
    }
}

/// Journals the moves of each config a reload puts in force ([`App::apply_moves`]) when
/// stored tickets sit where one applies; the start journals its own config's moves itself.
async fn journal_moves(
    store: Store,
    journal: journal::JournalHandle,
    mut moves: watch::Receiver<Vec<PipelineMove>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = moves.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        let current = moves.borrow_and_update().clone();
        journal_moves_logged(&store, &journal, current).await;
    }
}

/// Journals `moves` when stored tickets sit where one applies, for the processor to move them
/// in journal order. A moved ticket is where no move applies (moves come from removed
/// locations and go to configured ones), so a second start with the same config journals
/// nothing.
async fn journal_moves_logged(
    store: &Store,
    journal: &journal::JournalHandle,
    moves: Vec<PipelineMove>,
) {
    if moves.is_empty() {
        return;
    }
    if let Err(error) = journal_moves_due(store, journal, moves).await {
        // The tickets stay where they are; the next reload or start tries again.
        tracing::error!("config moves of stored tickets not journaled: {error:#}");
    }
}

async fn journal_moves_due(
    store: &Store,
    journal: &journal::JournalHandle,
    moves: Vec<PipelineMove>,
) -> anyhow::Result<()> {
    let scan = store.clone();
    let usage =
        tokio::task::spawn_blocking(move || crate::tickets::pipeline_usage(&scan)).await??;
    let due = crate::tickets::moves_due(&moves, &usage);
    if due == 0 {
        return Ok(());
    }
    let record = Record::Control(Box::new(ControlRecord {
        key: format!("config-moves:{}", Uuid::new_v4()),
        at: Utc::now(),
        command: ControlCommand::ApplyMoves { moves },
    }));
    let appended = journal.append(record).await?;
    tracing::info!(
        tickets = due,
        ?appended,
        "journaled the config's moves of stored tickets"
    );
    Ok(())
}
