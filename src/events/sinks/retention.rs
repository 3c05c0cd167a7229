//! Outbox retention: deletes events every sink has passed once they are older than
//! `min_age_secs` and behind the newest `min_events`.
//!
//! Readers of `GET /v1/events` have no cursor here: retention is what keeps events for them.
//! A reader whose `after` is older than the oldest kept event gets the oldest kept events; the
//! jump in `sequence` shows what it missed.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::feed::OutEvent;
use crate::config::RetentionConfig;
use crate::model::Position;
use crate::store::{Store, StoreError, WriteGate};

/// Events deleted per pass, so that one pass never holds a huge batch in memory.
const CHUNK: usize = 4096;

/// Runs compaction every `compact_interval_secs` until shutdown, holding `gate` (the one a
/// backup holds while it copies the state tree) for each chunk it deletes.
pub async fn run(
    store: Store,
    visible: watch::Receiver<Position>,
    (sinks, config): (Vec<String>, RetentionConfig),
    gate: WriteGate,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_secs(config.compact_interval_secs);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        let last = visible.borrow().outbox;
        let (store, sinks, config, gate) =
            (store.clone(), sinks.clone(), config.clone(), gate.clone());
        let pass =
            tokio::task::spawn_blocking(move || compact_with(&store, &sinks, &config, last, &gate));
        match pass.await {
            Ok(Ok(0)) => {}
            Ok(Ok(deleted)) => tracing::info!(deleted, "outbox compacted"),
            Ok(Err(error)) => tracing::error!(%error, "outbox compaction failed"),
            Err(error) => tracing::error!(%error, "outbox compaction panicked"),
        }
    }
}

/// One compaction pass; returns how many events it deleted.
pub fn compact(
    store: &Store,
    sinks: &[String],
    config: &RetentionConfig,
    last: u64,
) -> Result<usize, StoreError> {
    compact_with(store, sinks, config, last, &WriteGate::default())
}

fn compact_with(
    store: &Store,
    sinks: &[String],
    config: &RetentionConfig,
    last: u64,
    gate: &WriteGate,
) -> Result<usize, StoreError> {
    // Only durable cursors may decide: a cursor lost in a crash must not point past a gap.
    store.flush()?;
    let mut limit = last.saturating_sub(config.min_events);
    for sink in sinks {
        limit = limit.min(store.sink_cursor(sink)?.unwrap_or(0));
    }
    let cutoff = Utc::now() - chrono::Duration::seconds(config.min_age_secs as i64);
    let mut deleted = 0;
    loop {
        let Some(oldest) = store.outbox_oldest()? else {
            return Ok(deleted);
        };
        let candidates = store.outbox_read(oldest.saturating_sub(1), limit, CHUNK)?;
        let mut upto = None;
        for (seq, value) in &candidates {
            let event = OutEvent::parse(*seq, bytes::Bytes::copy_from_slice(value))?;
            if event.time > cutoff {
                break;
            }
            upto = Some(*seq);
        }
        let Some(upto) = upto else {
            return Ok(deleted);
        };
        let removed = {
            let _whole = gate.hold();
            store.outbox_compact(upto)?
        };
        deleted += removed;
        metrics::counter!("deskgate_outbox_compacted_total").increment(removed as u64);
        if candidates.len() < CHUNK || upto != candidates.last().map(|(s, _)| *s).unwrap_or(0) {
            return Ok(deleted);
        }
    }
}
