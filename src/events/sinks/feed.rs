//! A sink's view of the outbox: the events after its cursor, and the cursor's moves, with the
//! sink's status and metrics kept up to date on the way.
//!
//! The cursor is written to the store at most [`CURSOR_WRITE_INTERVAL`] after a delivery (and
//! before the sink waits or pauses), and [`CursorSync`] flushes those writes within
//! [`CURSOR_FLUSH_INTERVAL`]: a cursor is durable about a second after the delivery it covers,
//! so a crash repeats at most that second's deliveries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{lock, SharedStatus, SinkContext};
use crate::model::Position;
use crate::store::{Store, StoreError};

/// One outbox event as a sink delivers it.
#[derive(Debug, Clone)]
pub struct OutEvent {
    pub seq: u64,
    pub id: String,
    pub event_type: String,
    pub subject: String,
    pub time: DateTime<Utc>,
    /// The CloudEvent JSON exactly as the outbox holds it.
    pub body: Bytes,
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: String,
    time: DateTime<Utc>,
}

impl OutEvent {
    pub fn parse(seq: u64, body: Bytes) -> Result<OutEvent, StoreError> {
        let envelope: Envelope =
            serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt {
                key: format!("outbox/{seq}"),
                reason: e.to_string(),
            })?;
        Ok(OutEvent {
            seq,
            id: envelope.id,
            event_type: envelope.event_type,
            subject: envelope.subject,
            time: envelope.time,
            body,
        })
    }
}

/// The longest a delivered event's cursor move stays unwritten while the sink is busy.
pub const CURSOR_WRITE_INTERVAL: Duration = Duration::from_millis(250);
/// How often written cursor moves are flushed (one `fdatasync` shared by every sink).
pub const CURSOR_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Counts cursor writes, so that the flusher syncs only when a sink wrote since its last sync.
#[derive(Clone, Default)]
pub struct CursorSync {
    written: Arc<AtomicU64>,
}

impl CursorSync {
    fn wrote(&self) {
        self.written.fetch_add(1, Ordering::Release);
    }

    /// Flushes the store every [`CURSOR_FLUSH_INTERVAL`] after a cursor write, until shutdown.
    /// A cursor that is written but not flushed is lost by a kill -9 (the engine buffers its
    /// log in the process), which would repeat every delivery since the last flush.
    pub async fn run(self, store: Store, shutdown: CancellationToken) {
        let mut synced = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(CURSOR_FLUSH_INTERVAL) => {}
                () = shutdown.cancelled() => break,
            }
            let written = self.written.load(Ordering::Acquire);
            if written == synced {
                continue;
            }
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.flush()).await {
                Ok(Ok(())) => synced = written,
                Ok(Err(error)) => tracing::error!(%error, "cannot flush the sink cursors"),
                Err(error) => tracing::error!(%error, "flushing the sink cursors panicked"),
            }
        }
        // Whatever the sinks wrote on their way out.
        let _ = tokio::task::spawn_blocking(move || store.flush()).await;
    }
}

/// Reads a sink's events from the outbox; see [`Feed::reader`].
#[derive(Clone)]
pub struct Reader {
    store: Store,
    visible: watch::Receiver<Position>,
    batch: usize,
}

impl Reader {
    /// Whether events after `after` are visible.
    pub fn has_after(&self, after: u64) -> bool {
        self.visible.borrow().outbox > after
    }

    /// The events after `after` that are visible now, at most one batch. Blocking.
    pub fn read_after(&self, after: u64) -> Result<Vec<OutEvent>, StoreError> {
        let upto = self.visible.borrow().outbox;
        let raw = self.store.outbox_read(after, upto, self.batch)?;
        raw.into_iter()
            // The engine's buffer itself, shared rather than copied.
            .map(|(seq, value)| OutEvent::parse(seq, Bytes::from_owner(value)))
            .collect()
    }
}

pub struct Feed {
    pub name: String,
    pub shutdown: CancellationToken,
    /// The store, what the processor has made visible, and the batch size.
    reader: Reader,
    status: SharedStatus,
    /// The last event delivered.
    cursor: u64,
    /// The cursor as last written to the store (atomic so that `&self` methods can write it
    /// before waiting).
    stored: AtomicU64,
    /// When the cursor was last written.
    stored_at: std::sync::Mutex<Instant>,
    sync: CursorSync,
    /// Deliveries not yet added to the status and metrics.
    unreported: u64,
    /// How many cursor moves may go unwritten while the sink is behind.
    progress_every: u64,
}

impl Feed {
    /// Loads the sink's cursor; a new sink starts before the oldest event the outbox keeps.
    pub fn new(
        name: &str,
        context: &SinkContext,
        (batch, sync): (usize, CursorSync),
        status: SharedStatus,
    ) -> Result<Feed, StoreError> {
        let store = context.store.clone();
        let cursor = match store.sink_cursor(name)? {
            Some(cursor) => cursor,
            None => {
                let start = match store.outbox_oldest()? {
                    Some(oldest) => oldest.saturating_sub(1),
                    None => context.visible.borrow().outbox,
                };
                // Written at once so that compaction never deletes what this sink has not seen.
                store.sink_set_cursor(name, start)?;
                start
            }
        };
        lock(&status).cursor = cursor;
        Ok(Feed {
            name: name.to_owned(),
            shutdown: context.shutdown.clone(),
            reader: Reader {
                store,
                visible: context.visible.clone(),
                batch,
            },
            status,
            cursor,
            stored: AtomicU64::new(cursor),
            stored_at: std::sync::Mutex::new(Instant::now()),
            sync,
            unreported: 0,
            progress_every: 1,
        })
    }

    /// Lets up to `moves` cursor moves go unwritten while the sink is behind: worth it where
    /// deliveries are cheap and a repeat costs nothing (JetStream drops it).
    pub fn write_cursor_every(&mut self, moves: u64) {
        self.progress_every = moves.max(1);
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Waits until there are events after `after`; false when shutdown came first.
    pub async fn wait_after(&mut self, after: u64) -> bool {
        self.write_cursor();
        let shutdown = self.shutdown.clone();
        tokio::select! {
            seen = self.reader.visible.wait_for(|position| position.outbox > after) => seen.is_ok(),
            () = shutdown.cancelled() => false,
        }
    }

    /// The events after `after` that are visible now, at most one batch.
    pub fn read_after(&self, after: u64) -> Result<Vec<OutEvent>, StoreError> {
        self.reader.read_after(after)
    }

    /// Reads this sink's events apart from the feed, on another thread.
    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }

    /// The store the sink reads from and keeps its cursor and dead letters in.
    pub fn store(&self) -> &Store {
        &self.reader.store
    }

    /// Moves the cursor over a delivered (or dead-lettered) event. The store, the status and
    /// the metrics follow every `progress_every` events and whenever the sink catches up: a
    /// cursor move lost in a crash only repeats deliveries, which consumers deduplicate by id.
    pub fn commit(&mut self, event_seq: u64, next_time: Option<DateTime<Utc>>) {
        self.cursor = event_seq;
        let last = self.reader.visible.borrow().outbox;
        let lag_events = last.saturating_sub(event_seq);
        let stored = self.stored.load(Ordering::Acquire);
        let recent = self.stored_at_elapsed() < CURSOR_WRITE_INTERVAL;
        if lag_events > 0 && event_seq - stored < self.progress_every && recent {
            return;
        }
        self.write_cursor();
        let lag_seconds = match next_time {
            Some(time) if lag_events > 0 => {
                (Utc::now() - time).num_milliseconds().max(0) as f64 / 1000.0
            }
            _ => 0.0,
        };
        let delivered = std::mem::take(&mut self.unreported);
        let mut status = lock(&self.status);
        status.cursor = event_seq;
        status.lag_events = lag_events;
        status.lag_seconds = lag_seconds;
        status.delivered += delivered;
        if delivered > 0 {
            status.healthy = true;
            status.last_error = None;
        }
        drop(status);
        let sink = self.name.clone();
        metrics::gauge!("deskgate_sink_lag_events", "sink" => sink.clone()).set(lag_events as f64);
        metrics::gauge!("deskgate_sink_lag_seconds", "sink" => sink.clone()).set(lag_seconds);
        metrics::counter!("deskgate_sink_delivered_total", "sink" => sink).increment(delivered);
    }

    fn stored_at_elapsed(&self) -> Duration {
        self.stored_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .elapsed()
    }

    /// Writes the in-memory cursor if it moved since the last write; the flusher makes it
    /// durable. Also called before every wait, so a sink that stops (idle, or retrying a
    /// failing event) never sits on an unwritten cursor.
    fn write_cursor(&self) {
        if self.stored.load(Ordering::Acquire) == self.cursor {
            return;
        }
        if let Err(error) = self.reader.store.sink_set_cursor(&self.name, self.cursor) {
            // The in-memory cursor still moves: a lost write only repeats deliveries.
            tracing::error!(%error, sink = %self.name, "could not store the sink cursor");
            return;
        }
        self.sync.wrote();
        self.stored.store(self.cursor, Ordering::Release);
        *self
            .stored_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    /// Counts a successful delivery; reported with the next cursor move.
    pub fn delivered(&mut self, count: u64) {
        self.unreported += count;
    }

    /// Records a failed attempt that will be retried; refreshes the lag so that it shows while
    /// the sink is stuck.
    pub fn failed(&self, error: &str, oldest_pending: Option<DateTime<Utc>>) {
        let last = self.reader.visible.borrow().outbox;
        let lag_events = last.saturating_sub(self.cursor);
        let lag_seconds = oldest_pending
            .map(|time| (Utc::now() - time).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let mut status = lock(&self.status);
        status.retried += 1;
        status.healthy = false;
        status.last_error = Some(error.to_owned());
        status.lag_events = lag_events;
        status.lag_seconds = lag_seconds;
        drop(status);
        metrics::counter!("deskgate_sink_retried_total", "sink" => self.name.clone()).increment(1);
        metrics::gauge!("deskgate_sink_lag_events", "sink" => self.name.clone())
            .set(lag_events as f64);
        metrics::gauge!("deskgate_sink_lag_seconds", "sink" => self.name.clone()).set(lag_seconds);
    }

    /// Shows the sink as disabled by its endpoint (or enabled again).
    pub fn set_disabled(&self, reason: Option<&str>) {
        let mut status = lock(&self.status);
        status.disabled = reason.is_some();
        status.healthy = reason.is_none();
        status.last_error = reason.map(str::to_owned);
        drop(status);
        metrics::gauge!("deskgate_sink_disabled", "sink" => self.name.clone())
            .set(if reason.is_some() { 1.0 } else { 0.0 });
    }

    pub fn dead_lettered(&self) {
        lock(&self.status).dead_lettered += 1;
        metrics::counter!("deskgate_sink_dead_lettered_total", "sink" => self.name.clone())
            .increment(1);
    }

    /// Sleeps, unless shutdown comes first (then false).
    pub async fn pause(&self, wait: std::time::Duration) -> bool {
        self.write_cursor();
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.shutdown.cancelled() => false,
        }
    }
}
