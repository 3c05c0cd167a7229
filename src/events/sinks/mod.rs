//! Event sinks: deliver the outbox to NATS JetStream and signed webhooks.
//!
//! Each configured sink runs as one task that reads the outbox after its own durable cursor
//! (in the `sinks` tree, written by that task alone), delivers, and moves the cursor only over
//! events that were delivered (or dead-lettered), in order. A slow or broken sink holds back
//! nobody but itself: ingestion and the other sinks read the same outbox independently, and
//! the outbox keeps events until every sink has passed them (`housekeeping::outbox`).
//!
//! Delivery is at least once: a crash between a delivery and the cursor's move repeats the
//! delivery with the same event id (JetStream's duplicate window drops it; a webhook receiver
//! sees the same `webhook-id`). Cursors are durable about a second after a delivery
//! (`feed::CursorSync`), so a crash repeats at most that last second's deliveries.

pub mod dead_letter;
mod feed;
mod nats;
mod webhook;
mod window;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::sinks::SinkKind;
use crate::config::SinkConfig;
use crate::journal::JournalHandle;
use crate::model::Position;
use crate::store::Store;

pub use dead_letter::DeadLetter;
use feed::Feed;
pub use feed::OutEvent;

/// How a sink is doing, for `/readyz` and `/v1/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkStatus {
    pub kind: &'static str,
    /// The last event seq delivered.
    pub cursor: u64,
    /// Events sequenced but not yet delivered.
    pub lag_events: u64,
    /// Age of the oldest undelivered event.
    pub lag_seconds: f64,
    /// False while deliveries fail; events then accumulate in the outbox.
    pub healthy: bool,
    /// True while the endpoint has disabled the sink (a webhook answered 410 Gone); it delivers
    /// nothing until `POST /v1/control/sinks/{name}/enable`.
    pub disabled: bool,
    /// Whether the lag is over the sink's `max_lag_events` or `max_lag_secs` (readiness then
    /// answers 503).
    pub lagging: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lag_events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lag_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
}

type SharedStatus = Arc<Mutex<SinkStatus>>;

/// Reads a status; a poisoned lock only means a panic elsewhere mid-update of plain numbers.
fn lock(status: &SharedStatus) -> std::sync::MutexGuard<'_, SinkStatus> {
    status
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct SinkHandle {
    status: SharedStatus,
    replay: Option<mpsc::Sender<u64>>,
    /// Bumped to re-enable a disabled sink (webhooks only).
    enable: Option<watch::Sender<u64>>,
}

/// The running sinks, as the HTTP routes see them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Sinks(Arc<BTreeMap<String, SinkHandle>>);

/// Why a replay request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no sink {0:?} is configured")]
    NoSink(String),
    #[error("sink {0:?} does not keep dead letters")]
    NoDeadLetters(String),
    #[error("sink {0:?} has too many replays queued; try again later")]
    Busy(String),
}

/// Why an enable request was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    #[error("no sink {0:?} is configured")]
    NoSink(String),
    #[error("sink {0:?} is not disabled")]
    NotDisabled(String),
}

impl Sinks {
    /// Every sink's status, by name, with `lagging` judged now.
    pub fn statuses(&self) -> BTreeMap<String, SinkStatus> {
        self.0
            .iter()
            .map(|(name, handle)| {
                let mut status = lock(&handle.status).clone();
                let over = |limit: Option<u64>, lag: f64| limit.is_some_and(|l| lag > l as f64);
                status.lagging = over(status.max_lag_events, status.lag_events as f64)
                    || over(status.max_lag_secs, status.lag_seconds);
                (name.clone(), status)
            })
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Re-enables a sink its endpoint disabled; its task delivers again from the refused event.
    pub fn enable(&self, name: &str) -> Result<(), EnableError> {
        let handle = self
            .0
            .get(name)
            .ok_or_else(|| EnableError::NoSink(name.to_owned()))?;
        let enable = handle
            .enable
            .as_ref()
            .filter(|_| lock(&handle.status).disabled)
            .ok_or_else(|| EnableError::NotDisabled(name.to_owned()))?;
        enable.send_modify(|generation| *generation += 1);
        Ok(())
    }

    /// Queues a dead letter for redelivery by its sink's task.
    pub fn replay(&self, name: &str, seq: u64) -> Result<(), ReplayError> {
        let handle = self
            .0
            .get(name)
            .ok_or_else(|| ReplayError::NoSink(name.to_owned()))?;
        let queue = handle
            .replay
            .as_ref()
            .ok_or_else(|| ReplayError::NoDeadLetters(name.to_owned()))?;
        queue
            .try_send(seq)
            .map_err(|_| ReplayError::Busy(name.to_owned()))
    }
}

/// What every sink task needs from the daemon.
pub struct SinkContext {
    pub store: Store,
    pub visible: watch::Receiver<Position>,
    pub journal: JournalHandle,
    pub shutdown: CancellationToken,
}

/// Starts one task per configured sink and their cursors' sync, all on `tracker`.
pub fn start(
    configs: &BTreeMap<String, SinkConfig>,
    context: SinkContext,
    tracker: &TaskTracker,
) -> anyhow::Result<Sinks> {
    let names: Vec<String> = configs.keys().cloned().collect();
    context.store.sink_forget_others(&names)?;
    let mut handles = BTreeMap::new();
    let cursor_sync = feed::CursorSync::default();
    for (name, config) in configs {
        let status = Arc::new(Mutex::new(SinkStatus {
            kind: match config.kind {
                SinkKind::Nats => "nats",
                SinkKind::Webhook => "webhook",
            },
            healthy: true,
            max_lag_events: config.max_lag_events,
            max_lag_secs: config.max_lag_secs,
            ..SinkStatus::default()
        }));
        let feed = Feed::new(
            name,
            &context,
            (config.batch, cursor_sync.clone()),
            Arc::clone(&status),
        )?;
        let (replay, enable) = match (config.kind, &config.nats, &config.webhook) {
            (SinkKind::Nats, Some(nats), _) => {
                tracker.spawn(nats::run(feed, nats.clone()));
                (None, None)
            }
            (SinkKind::Webhook, _, Some(hook)) => {
                let (replay_tx, replay_rx) = mpsc::channel(1024);
                let (enable_tx, enable_rx) = watch::channel(0);
                let sink = webhook::WebhookSink::new(name, hook, context.journal.clone())?;
                tracker.spawn(sink.run(feed, replay_rx, enable_rx));
                (Some(replay_tx), Some(enable_tx))
            }
            // Validation refuses a sink without its kind's table.
            _ => anyhow::bail!("sinks.{name}: missing the options table of its kind"),
        };
        handles.insert(
            name.clone(),
            SinkHandle {
                status,
                replay,
                enable,
            },
        );
    }
    tracker.spawn(cursor_sync.run(context.store.clone(), context.shutdown.clone()));
    Ok(Sinks(Arc::new(handles)))
}

/// The backoff of a sink's retries: `failures` failures in a row so far (0 before the first
/// retry), between `min_ms` and `max_ms`.
pub(crate) fn backoff(failures: u32, min_ms: u64, max_ms: u64) -> Duration {
    crate::backoff::Backoff::new(
        Duration::from_millis(min_ms.max(1)),
        Duration::from_millis(max_ms),
    )
    .delay(failures.saturating_add(1))
}

#[cfg(test)]
mod tests;
