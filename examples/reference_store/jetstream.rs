//! Following deskgate's JetStream sink (`--nats`) through a durable pull consumer.
//!
//! JetStream keeps one ticket's (or contact's) events in order, but not the order between
//! tickets: the sink publishes events of different tickets concurrently. This store applies
//! events in `sequence` order all the same (a contact merge must come after the tickets it
//! moves exist, a message after its sender's contact), so it holds what arrives early until
//! the events before it are there, applies each contiguous run with the cursor in one
//! transaction (`store::apply_page`), and acknowledges the run's messages only after the
//! commit. A crash in between redelivers them; their sequence is at or below the cursor, so
//! they are acknowledged and dropped.
//!
//! A missing event is waited for, for ever: deskgate's NATS sink never gives up on an event,
//! and what this consumer received but had not acknowledged when it was killed comes back
//! after the consumer's `ack_wait` (which is why that is short, and why an earlier version of
//! this file, which took an event missing for ten seconds as gone, lost events after a kill).
//! The one gap taken as real is before the first event of a fresh store: a stream that deskgate
//! began to fill after its outbox had dropped older events starts above 1. It is taken once
//! nothing has come to fill it for longer than `ack_wait`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use rusqlite::Connection;

use crate::{store, Args, Envelope, Result};

/// Follows the stream for ever; returns only on an error a retry cannot mend.
pub(crate) async fn follow(args: &Args, url: &str, db: &mut Connection) -> Result<()> {
    let client = async_nats::connect(url).await?;
    let stream = jetstream::new(client).get_stream(&args.stream).await?;
    let config = pull::Config {
        durable_name: Some(args.durable.clone()),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: ack_wait(args),
        max_ack_pending: 10_000,
        ..Default::default()
    };
    let consumer = stream.get_or_create_consumer(&args.durable, config).await?;
    eprintln!(
        "reference_store: following stream {} as {} after {}",
        args.stream,
        args.durable,
        store::cursor(db)?.0
    );
    let mut early: BTreeMap<u64, (Envelope, Message)> = BTreeMap::new();
    let mut gap_since: Option<Instant> = None;
    loop {
        let fetched = consumer
            .fetch()
            .max_messages(args.limit)
            .expires(Duration::from_secs(args.wait_secs))
            .messages()
            .await;
        match fetched {
            Ok(mut batch) => {
                while let Some(message) = batch.next().await {
                    let message = match message {
                        Ok(message) => message,
                        Err(error) => {
                            eprintln!("reference_store: a JetStream message: {error}");
                            break;
                        }
                    };
                    let event: Envelope = serde_json::from_slice(&message.payload)?;
                    early.insert(event.seq()?, (event, message));
                }
            }
            Err(error) => {
                // The server restarting: async-nats reconnects by itself.
                eprintln!("reference_store: fetching from JetStream: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let (last, _) = store::cursor(db)?;
        let gap_wait = ack_wait(args) + Duration::from_secs(args.wait_secs);
        let (events, messages) = next_run(&mut early, last, (&mut gap_since, gap_wait));
        if !events.is_empty() {
            store::apply_page(db, &events)?;
        }
        for message in messages {
            if let Err(error) = message.ack().await {
                // Redelivered later, and acknowledged then as already applied.
                eprintln!("reference_store: an acknowledgement: {error}");
            }
        }
    }
}

/// How long JetStream waits for an acknowledgement before it delivers a message again: a
/// little more than a fetch lasts.
fn ack_wait(args: &Args) -> Duration {
    Duration::from_secs(2 * args.wait_secs + 5)
}

/// Takes from `early` the events after `last` that follow it without a gap, and the messages
/// to acknowledge once they are applied (with those of events already applied). A fresh store
/// (`last` 0) starts at its first event once nothing came before it for `gap_wait`.
fn next_run(
    early: &mut BTreeMap<u64, (Envelope, Message)>,
    last: u64,
    (gap_since, gap_wait): (&mut Option<Instant>, Duration),
) -> (Vec<Envelope>, Vec<Message>) {
    let mut events = Vec::new();
    let mut messages = Vec::new();
    while let Some(entry) = early.first_entry().filter(|e| *e.key() <= last) {
        messages.push(entry.remove().1);
    }
    let mut next = last + 1;
    if let Some(&first) = early.keys().next().filter(|first| **first != next) {
        let since = *gap_since.get_or_insert_with(Instant::now);
        if last > 0 || since.elapsed() < gap_wait {
            return (events, messages);
        }
        eprintln!("reference_store: the stream starts at event {first}");
        next = first;
    }
    *gap_since = None;
    while let Some(entry) = early.first_entry().filter(|e| *e.key() == next) {
        let (event, message) = entry.remove();
        events.push(event);
        messages.push(message);
        next += 1;
    }
    (events, messages)
}
