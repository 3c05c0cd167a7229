//! The NATS JetStream sink: publishes every event with `Nats-Msg-Id` = the event id and
//! `Content-Type: application/cloudevents+json` (the CloudEvents NATS binding, structured
//! mode), and moves its cursor only over acknowledged publishes.
//!
//! Subjects are `<prefix>.<event subject>.<event type without "deskgate.">`, such as
//! `deskgate.events.<ticket id>.ticket.created`: the ticket (or contact) sits in a fixed token,
//! so a consumer filters one ticket with `<prefix>.<id>.>`, one type with
//! `<prefix>.*.ticket.created`, and partitions by that token (JetStream subject mapping
//! `{{partition(n,k)}}`) without splitting a ticket over partitions, whose order the stream then
//! keeps. The stream takes `<prefix>.>`, which covered the earlier `<prefix>.<event type>`
//! layout too: a stream created by an earlier deskgate keeps working unchanged.
//!
//! Publishes are pipelined up to `max_in_flight`, but never two of the same subject (ticket or
//! contact) at once: an event waits for the ack of the previous event about the same thing, so
//! a failed publish can never let a later event of that ticket land before it, while events
//! about other tickets go ahead of it (`window.rs`). Acks are taken in publish order and the
//! cursor moves over the acknowledged prefix of the outbox. On any failure the pipeline is
//! dropped and publishing starts again after the cursor; JetStream's duplicate window drops
//! what had already landed.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::context::{ContextBuilder, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use async_nats::ServerAddr;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use super::backoff;
use super::feed::{Feed, OutEvent, Reader};
use super::window::Window;
use crate::config::sinks::{NatsSinkConfig, NatsStorage};
use crate::store::StoreError;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs the sink until shutdown.
pub async fn run(mut feed: Feed, config: NatsSinkConfig) {
    feed.write_cursor_every(config.max_in_flight as u64);
    let mut failures = 0u32;
    let Some(client) = connect(&mut feed, &config).await else {
        return;
    };
    let js = context(client, &config);
    loop {
        let attempt = async {
            ensure_stream(&js, &config).await?;
            publish_loop(&js, &mut feed, &config, &mut failures).await
        };
        match attempt.await {
            Ok(()) => break,
            Err(_) if feed.shutdown.is_cancelled() => break,
            Err(error) => {
                let pending = feed.read_after(feed.cursor()).ok();
                let oldest = pending.and_then(|p| p.first().map(|e| e.time));
                feed.failed(&error.to_string(), oldest);
                tracing::warn!(sink = %feed.name, %error, cursor = feed.cursor(), "NATS delivery failed; retrying");
                let wait = backoff(failures, config.backoff_min_ms, config.backoff_max_ms);
                failures = failures.saturating_add(1);
                if !feed.pause(wait).await {
                    break;
                }
            }
        }
    }
    tracing::debug!(sink = %feed.name, cursor = feed.cursor(), "NATS sink stopped");
}

/// Connects, retrying with backoff; None on shutdown. Once connected, the client reconnects
/// by itself.
async fn connect(feed: &mut Feed, config: &NatsSinkConfig) -> Option<async_nats::Client> {
    let servers: Vec<ServerAddr> = config
        .servers
        .iter()
        .filter_map(|server| server.parse().ok())
        .collect();
    let mut retry = 0;
    loop {
        let options = async_nats::ConnectOptions::new()
            .name(format!("deskgate-sink-{}", feed.name))
            .connection_timeout(Duration::from_millis(config.ack_timeout_ms))
            .max_reconnects(None);
        match options.connect(servers.clone()).await {
            Ok(client) => {
                tracing::info!(sink = %feed.name, "connected to NATS");
                return Some(client);
            }
            Err(error) => {
                feed.failed(&format!("connecting to NATS: {error}"), None);
                tracing::warn!(sink = %feed.name, %error, "cannot connect to NATS; retrying");
            }
        }
        let wait = backoff(retry, config.backoff_min_ms, config.backoff_max_ms);
        retry = retry.saturating_add(1);
        if !feed.pause(wait).await {
            return None;
        }
    }
}

/// The JetStream context: `ack_timeout_ms` bounds API requests and every ack, awaited or
/// dropped. The client holds a permit per unacknowledged publish, including those of a pipeline
/// dropped after a failure until their acks time out; room for two pipelines, and waiting
/// rather than failing when that is full, keeps a quick retry from failing on its own leftovers.
fn context(client: async_nats::Client, config: &NatsSinkConfig) -> jetstream::Context {
    let timeout = Duration::from_millis(config.ack_timeout_ms);
    ContextBuilder::new()
        .timeout(timeout)
        .ack_timeout(timeout)
        .max_ack_inflight(config.max_in_flight.saturating_mul(2))
        .backpressure_on_inflight(true)
        .build(client)
}

/// Creates the stream when absent; warns when an existing one deduplicates for too short.
async fn ensure_stream(js: &jetstream::Context, config: &NatsSinkConfig) -> Result<(), Error> {
    let wanted = stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        storage: match config.storage {
            NatsStorage::File => stream::StorageType::File,
            NatsStorage::Memory => stream::StorageType::Memory,
        },
        num_replicas: config.replicas,
        duplicate_window: Duration::from_secs(config.duplicate_window_secs),
        ..Default::default()
    };
    let stream = js.get_or_create_stream(wanted).await?;
    let window = stream.cached_info().config.duplicate_window;
    if window < Duration::from_secs(config.duplicate_window_secs) {
        tracing::warn!(
            stream = %config.stream,
            window_secs = window.as_secs(),
            "the existing stream's duplicate window is shorter than configured; re-publishes after a long outage may show as duplicates"
        );
    }
    Ok(())
}

/// The CloudEvents NATS protocol binding's structured content mode: the whole event is the
/// payload, announced by this header.
const CONTENT_TYPE: &str = "Content-Type";
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// `<prefix>.<subject>.<type without "deskgate.">`. Characters a subject token cannot hold
/// (`.`, `*`, `>`, whitespace) become `_` in the subject token, so it stays one token; an empty
/// one becomes `_`. Ticket and contact ids (UUIDs) pass unchanged.
pub fn nats_subject(prefix: &str, subject: &str, event_type: &str) -> String {
    let token: String = subject
        .chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let token = if token.is_empty() {
        "_".to_owned()
    } else {
        token
    };
    let kind = event_type.strip_prefix("deskgate.").unwrap_or(event_type);
    format!("{prefix}.{token}.{kind}")
}

struct InFlight {
    seq: u64,
    subject: String,
    ack: PublishAckFuture,
}

/// How many events the window holds (published, or held behind an earlier event about their
/// subject) per event allowed in flight: room for events about other subjects to go ahead
/// while one subject's events wait their turn.
const WINDOW_PER_IN_FLIGHT: usize = 16;
/// The most events the window holds, unless `max_in_flight` is larger (then it holds that
/// many): the sink's memory stays near what `max_in_flight` alone asks for, however large an
/// operator sets it. 4,096 events of 1.5 KB are about 6 MB.
const WINDOW_MAX: usize = 4096;

/// Publishes until shutdown (Ok) or a failure (Err, to be retried from the cursor).
async fn publish_loop(
    js: &jetstream::Context,
    feed: &mut Feed,
    config: &NatsSinkConfig,
    failures: &mut u32,
) -> Result<(), Error> {
    let capacity = (config.max_in_flight.saturating_mul(WINDOW_PER_IN_FLIGHT))
        .min(WINDOW_MAX)
        .max(config.max_in_flight);
    let mut window = Window::default();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // Events read but not yet admitted to the window, and the last event read.
    let mut backlog: VecDeque<OutEvent> = VecDeque::new();
    let mut read = feed.cursor();
    let mut ahead = ReadAhead::new(feed.reader());
    loop {
        while window.len() < capacity {
            if backlog.is_empty() {
                backlog = ahead.next(read).await?.into();
            }
            let Some(event) = backlog.pop_front() else {
                break;
            };
            read = event.seq;
            window.admit(event);
        }
        while in_flight.len() < config.max_in_flight {
            let Some(event) = window.next_ready() else {
                break;
            };
            let subject = nats_subject(&config.subject_prefix, &event.subject, &event.event_type);
            let message = PublishMessage::build()
                .payload(event.body)
                .header(CONTENT_TYPE, CLOUDEVENTS_JSON)
                .message_id(&event.id);
            let ack = js.send_publish(subject, message).await?;
            in_flight.push_back(InFlight {
                seq: event.seq,
                subject: event.subject,
                ack,
            });
        }
        // Nothing in flight means nothing is held either: every event read is acknowledged
        // and the cursor has passed it.
        if in_flight.is_empty() {
            if !feed.wait_after(read).await {
                return Ok(());
            }
            continue;
        }
        let waiting = backlog.front().map(|event| event.time);
        settle_front(feed, &mut in_flight, &mut window, waiting).await?;
        *failures = 0;
    }
}

/// Reads the outbox a batch ahead, on a blocking thread while the sink publishes the batch
/// before: done between publishes, reading and parsing the events took about a quarter of
/// the bench's samples of deskgate's delivery, all of it in the sink's own task.
struct ReadAhead {
    reader: Reader,
    /// The read of the batch after `.0`, under way.
    pending: Option<(u64, Read)>,
}

/// A read of the outbox on a blocking thread.
type Read = JoinHandle<Result<Vec<OutEvent>, StoreError>>;

impl ReadAhead {
    fn new(reader: Reader) -> Self {
        ReadAhead {
            reader,
            pending: None,
        }
    }

    /// The events after `after` visible now (at most one batch), and the read of the batch
    /// behind them started.
    async fn next(&mut self, after: u64) -> Result<Vec<OutEvent>, Error> {
        let ahead = match self.pending.take() {
            Some((from, read)) if from == after => read.await??,
            _ => Vec::new(),
        };
        // A read ahead that found nothing may have run before more events were visible.
        let events = if !ahead.is_empty() {
            ahead
        } else if self.reader.has_after(after) {
            let reader = self.reader.clone();
            tokio::task::spawn_blocking(move || reader.read_after(after)).await??
        } else {
            return Ok(Vec::new());
        };
        let last = events.last().map(|event| event.seq);
        if let Some(last) = last.filter(|last| self.reader.has_after(*last)) {
            let reader = self.reader.clone();
            let read = tokio::task::spawn_blocking(move || reader.read_after(last));
            self.pending = Some((last, read));
        }
        Ok(events)
    }
}

/// Waits for the oldest publish's ack and moves the cursor over the acknowledged prefix;
/// `waiting`: when the first event not yet in the window was made (for the lag).
async fn settle_front(
    feed: &mut Feed,
    in_flight: &mut VecDeque<InFlight>,
    window: &mut Window,
    waiting: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    let Some(front) = in_flight.pop_front() else {
        return Ok(());
    };
    let shutdown = feed.shutdown.clone();
    let ack = tokio::select! {
        ack = front.ack => ack?,
        // Unacknowledged publishes are repeated at the next start; the window drops them.
        () = shutdown.cancelled() => return Err("shutting down".into()),
    };
    if ack.duplicate {
        tracing::debug!(sink = %feed.name, seq = front.seq, "JetStream already had this event");
    }
    feed.delivered(1);
    if let Some(advance) = window.acked(front.seq, &front.subject) {
        feed.commit(advance.seq, advance.next_time.or(waiting));
    }
    Ok(())
}
