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
//! a failed publish can never let a later event of that ticket land before it. Events about
//! other tickets go ahead of a waiting one, so the stream keeps each ticket's events in outbox
//! order but not the whole outbox's (the events' `sequence` attribute gives that). The cursor
//! moves over the events acknowledged without a gap. On any failure the pipeline is dropped
//! and publishing starts again after the cursor; JetStream's duplicate window drops what had
//! already landed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use async_nats::jetstream::context::{ContextBuilder, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use async_nats::ServerAddr;
use chrono::{DateTime, Utc};

use super::backoff;
use super::feed::{Feed, OutEvent};
use crate::config::sinks::{NatsSinkConfig, NatsStorage};

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

/// The events read from the outbox and not yet acknowledged: waiting to be published (`held`,
/// in outbox order) or published and waiting for their ack (`in_flight`, in publish order).
///
/// An event whose subject has an earlier event in flight or held waits, but the events of
/// other subjects behind it go ahead: one ticket's events reach the stream in order while a
/// busy ticket does not stall the whole pipeline (it did when every conflict drained it, which
/// happens at every message: `ticket.created` and `message.received` share their subject).
#[derive(Default)]
struct Pipeline {
    held: VecDeque<OutEvent>,
    in_flight: VecDeque<InFlight>,
    /// Subjects with an event in flight.
    busy: HashSet<String>,
    /// Every event read and not yet acknowledged, by sequence number, with its time: the cursor
    /// stands just before the first of them.
    outstanding: BTreeMap<u64, DateTime<Utc>>,
    /// The last event read from the outbox.
    read: u64,
}

impl Pipeline {
    fn starting_after(cursor: u64) -> Pipeline {
        Pipeline {
            read: cursor,
            ..Pipeline::default()
        }
    }

    fn take(&mut self, events: Vec<OutEvent>) {
        for event in events {
            self.read = event.seq;
            self.outstanding.insert(event.seq, event.time);
            self.held.push_back(event);
        }
    }

    /// The held events that may be published now, in outbox order, up to `room` of them: none
    /// whose subject is in flight or has an earlier event still held. Marks their subjects busy.
    fn ready(&mut self, room: usize) -> Vec<OutEvent> {
        let mut ready = Vec::new();
        let mut waiting: HashSet<String> = HashSet::new();
        let mut kept = VecDeque::with_capacity(self.held.len());
        while let Some(event) = self.held.pop_front() {
            if ready.len() == room {
                kept.push_back(event);
                kept.append(&mut self.held);
                break;
            }
            if self.busy.contains(&event.subject) || waiting.contains(&event.subject) {
                waiting.insert(event.subject.clone());
                kept.push_back(event);
            } else {
                self.busy.insert(event.subject.clone());
                ready.push(event);
            }
        }
        self.held = kept;
        ready
    }

    /// The sequence number every event up to which is acknowledged, and the time of the next.
    fn acknowledged_up_to(&self) -> (u64, Option<DateTime<Utc>>) {
        match self.outstanding.first_key_value() {
            Some((&seq, &time)) => (seq - 1, Some(time)),
            None => (self.read, None),
        }
    }
}

/// Publishes until shutdown (Ok) or a failure (Err, to be retried from the cursor).
async fn publish_loop(
    js: &jetstream::Context,
    feed: &mut Feed,
    config: &NatsSinkConfig,
    failures: &mut u32,
) -> Result<(), Error> {
    let mut pipeline = Pipeline::starting_after(feed.cursor());
    loop {
        // Read ahead while the held events leave room: a full batch of one ticket's events
        // must not keep the next tickets from being read.
        if pipeline.held.len() < config.max_in_flight {
            let events = feed.read_after(pipeline.read)?;
            pipeline.take(events);
        }
        let room = config.max_in_flight - pipeline.in_flight.len();
        let ready = pipeline.ready(room);
        if !ready.is_empty() {
            for event in ready {
                let subject =
                    nats_subject(&config.subject_prefix, &event.subject, &event.event_type);
                let message = PublishMessage::build()
                    .payload(event.body)
                    .header(CONTENT_TYPE, CLOUDEVENTS_JSON)
                    .message_id(&event.id);
                let ack = js.send_publish(subject, message).await?;
                pipeline.in_flight.push_back(InFlight {
                    seq: event.seq,
                    subject: event.subject,
                    ack,
                });
            }
            *failures = 0;
            continue;
        }
        if !pipeline.in_flight.is_empty() {
            settle_front(feed, &mut pipeline).await?;
        } else if pipeline.held.is_empty() && !feed.wait_after(pipeline.read).await {
            return Ok(());
        }
    }
}

/// Waits for the oldest publish's ack and moves the cursor over what is acknowledged.
async fn settle_front(feed: &mut Feed, pipeline: &mut Pipeline) -> Result<(), Error> {
    let Some(front) = pipeline.in_flight.pop_front() else {
        return Ok(());
    };
    let shutdown = feed.shutdown.clone();
    let ack = tokio::select! {
        ack = front.ack => ack?,
        // Unacknowledged publishes are repeated at the next start; the window drops them.
        () = shutdown.cancelled() => return Err("shutting down".into()),
    };
    pipeline.busy.remove(&front.subject);
    pipeline.outstanding.remove(&front.seq);
    if ack.duplicate {
        tracing::debug!(sink = %feed.name, seq = front.seq, "JetStream already had this event");
    }
    feed.delivered(1);
    let (cursor, next_time) = pipeline.acknowledged_up_to();
    if cursor > feed.cursor() {
        feed.commit(cursor, next_time);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, subject: &str) -> OutEvent {
        OutEvent {
            seq,
            id: format!("e{seq}"),
            event_type: "deskgate.ticket.created".to_owned(),
            subject: subject.to_owned(),
            time: DateTime::from_timestamp(1_700_000_000 + seq as i64, 0).expect("a time"),
            body: bytes::Bytes::new(),
        }
    }

    fn seqs(events: &[OutEvent]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_ticket_waiting_for_its_ack_lets_other_tickets_pass_but_keeps_its_own_order() {
        let mut pipeline = Pipeline::starting_after(10);
        pipeline.take(vec![
            event(11, "a"),
            event(12, "a"),
            event(13, "b"),
            event(14, "a"),
            event(15, "c"),
        ]);
        assert_eq!(seqs(&pipeline.ready(8)), [11, 13, 15]);
        // 12 and 14 wait for 11's ack, in their order.
        assert_eq!(seqs(&pipeline.ready(8)), Vec::<u64>::new());
        pipeline.busy.remove("a");
        assert_eq!(seqs(&pipeline.ready(8)), [12]);
        pipeline.busy.remove("a");
        assert_eq!(seqs(&pipeline.ready(8)), [14]);
    }

    #[test]
    fn no_more_than_the_room_left_is_published() {
        let mut pipeline = Pipeline::starting_after(0);
        pipeline.take((1..=5).map(|n| event(n, &format!("t{n}"))).collect());
        assert_eq!(seqs(&pipeline.ready(2)), [1, 2]);
        assert_eq!(seqs(&pipeline.ready(2)), [3, 4]);
        assert_eq!(
            seqs(&pipeline.held.iter().cloned().collect::<Vec<_>>()),
            [5]
        );
    }

    #[test]
    fn the_cursor_stops_before_the_first_unacknowledged_event() {
        let mut pipeline = Pipeline::starting_after(10);
        pipeline.take(vec![event(11, "a"), event(12, "a"), event(13, "b")]);
        assert_eq!(pipeline.acknowledged_up_to().0, 10);
        // 13 (another ticket) acknowledged before 11: the cursor cannot pass 11 yet.
        pipeline.outstanding.remove(&13);
        let (cursor, next) = pipeline.acknowledged_up_to();
        assert_eq!((cursor, next), (10, Some(event(11, "a").time)));
        pipeline.outstanding.remove(&11);
        assert_eq!(pipeline.acknowledged_up_to().0, 11);
        pipeline.outstanding.remove(&12);
        assert_eq!(pipeline.acknowledged_up_to(), (13, None));
    }
}
