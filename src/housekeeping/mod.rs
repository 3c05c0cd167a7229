//! Housekeeping: the periodic passes that keep deskgate's state bounded, above the pipeline
//! (they read what the processor published and delete what nothing needs any more).
//!
//! - [`journal`]: journal retention (applied records older than `journal.retention_secs`).
//! - [`blobs`]: the blob sweep (attachments and raw input nothing names any more), after each
//!   journal retention pass.
//! - [`outbox`]: outbox retention (events every sink has passed, older than
//!   `retention.min_age_secs`).
//!
//! Each runs on its own interval through [`every`], off the async workers. Forgetting closed
//! tickets is not here: the processor does it inside its steps, at times taken from the
//! records, so that a replay forgets at the same points (`tickets::forget`).

pub mod blobs;
pub mod journal;
pub mod outbox;

use std::fmt::Display;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{JournalConfig, RetentionConfig};
use crate::model::Position;
use crate::store::{Blobs, Store, WriteGate};

/// What the passes read and delete from.
pub struct Housekeeping {
    pub store: Store,
    pub blobs: Blobs,
    /// The processor's published (durable) position: nothing after it is touched.
    pub visible: watch::Receiver<Position>,
    /// Held while a pass deletes, as by every other state writer (and a backup).
    pub gate: WriteGate,
    pub shutdown: CancellationToken,
}

impl Housekeeping {
    /// Starts the journal pass (with the blob sweep) and the outbox pass on `tracker`.
    /// `sinks` are the configured sinks, whose cursors hold events back.
    pub fn start(
        self,
        tracker: &TaskTracker,
        journal: JournalConfig,
        (sinks, retention): (Vec<String>, RetentionConfig),
    ) {
        tracker.spawn(self.clone_parts().journal_passes(journal));
        tracker.spawn(self.outbox_passes(sinks, retention));
    }

    fn clone_parts(&self) -> Housekeeping {
        Housekeeping {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            visible: self.visible.clone(),
            gate: self.gate.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Journal retention, then the blob sweep, every `compact_interval_secs`.
    async fn journal_passes(self, config: JournalConfig) {
        let interval = Duration::from_secs(config.compact_interval_secs);
        every(interval, &self.shutdown, || {
            let cursor = self.visible.borrow().cursor;
            let cutoff = Utc::now() - chrono::Duration::seconds(config.retention_secs as i64);
            let (store, blobs, gate) = (self.store.clone(), self.blobs.clone(), self.gate.clone());
            move || {
                let compacted = journal::compact(&store, cursor, cutoff, &gate);
                report(compacted, "journal compacted", "journal compaction failed");
                let swept = blobs::sweep_blobs(&store, &blobs, cutoff);
                report(
                    swept,
                    "blobs nothing names any more deleted",
                    "blob sweep failed",
                );
            }
        })
        .await
    }

    /// Outbox retention every `compact_interval_secs`.
    async fn outbox_passes(self, sinks: Vec<String>, config: RetentionConfig) {
        let interval = Duration::from_secs(config.compact_interval_secs);
        every(interval, &self.shutdown, || {
            let last = self.visible.borrow().outbox;
            let (store, gate) = (self.store.clone(), self.gate.clone());
            let (sinks, config) = (sinks.clone(), config.clone());
            move || {
                let compacted = outbox::compact_with(&store, &sinks, &config, last, &gate);
                report(compacted, "outbox compacted", "outbox compaction failed");
            }
        })
        .await
    }
}

/// The one pass loop: every `interval` until `shutdown`, takes a pass from `prepare` (which
/// reads what the pass needs now) and runs it off the async workers. A panicking pass is
/// logged and the next one runs on time.
pub async fn every<P>(
    interval: Duration,
    shutdown: &CancellationToken,
    mut prepare: impl FnMut() -> P,
) where
    P: FnOnce() + Send + 'static,
{
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(error) = tokio::task::spawn_blocking(prepare()).await {
            tracing::error!(%error, "housekeeping pass panicked");
        }
    }
}

/// Logs a pass's outcome once: how many it deleted (nothing when none), or why it failed.
fn report<E: Display>(result: Result<usize, E>, deleted_what: &str, failed: &str) {
    match result {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "{deleted_what}"),
        Err(error) => tracing::error!(%error, "{failed}"),
    }
}
