//! `processor` mode: the processor alone, applying a journal of API-channel messages, against
//! reading and decoding the same journal (what any processor of it must do at the least).
//!
//! The messages are the `ingest` mode's (`load::Target::api`: 64 connections, 500 customers,
//! threads of ten), parsed by the API channel and journaled before the clock starts, so that
//! neither HTTP nor the journal writer shares the cores with what is measured. The processor
//! runs as the daemon's does, in steps of `events.processor_batch` records, each step committed
//! and synced. Besides the rates it prints what the steps asked of the state per message
//! ([`deskgate::store::StateOps`]): the storage operations behind each message.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeZone, Utc};
use deskgate::channels::HookRequest;
use deskgate::events::OutboxWriter;
use deskgate::ids::Minter;
use deskgate::live::{Live, LiveHandle};
use deskgate::model::{DedupeKey, Position, Record};
use deskgate::processor::Processor;
use deskgate::store::{Blobs, Store};

/// Connections whose messages are interleaved in the journal, as the ingest mode's load makes
/// them.
const CONNECTIONS: usize = 64;

pub fn run(messages: u64, rounds: usize, batch: Option<usize>, replay: bool) -> anyhow::Result<()> {
    let mut best = (Duration::MAX, Duration::MAX);
    let mut ops = None;
    for _ in 0..rounds.max(1) {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let last = journal(&store, dir.path(), messages)?;
        let started = Instant::now();
        read_all(&store, last)?;
        best.1 = best.1.min(started.elapsed());
        let (took, per_step) = apply_all(&store, dir.path(), last, batch, replay)?;
        best.0 = best.0.min(took);
        ops = Some(per_step);
    }
    let rate = |took: Duration| messages as f64 / took.as_secs_f64();
    let (deskgate, baseline) = (rate(best.0), rate(best.1));
    println!(
        "bench processor: messages={messages} deskgate={deskgate:.0} baseline={baseline:.0} \
         ratio={:.3} us_per_msg={:.1}",
        deskgate / baseline,
        best.0.as_secs_f64() * 1e6 / messages as f64,
    );
    if let Some(ops) = ops {
        let per = |n: u64| n as f64 / messages as f64;
        println!(
            "bench processor-ops: engine_reads={:.2} carried_reads={:.2} buffered_reads={:.2} \
             scans={:.2} puts={:.2} written={:.2} per message, steps={}",
            per(ops.engine_reads),
            per(ops.carried_reads),
            per(ops.buffered_reads),
            per(ops.scans),
            per(ops.puts),
            per(ops.written),
            ops.steps,
        );
    }
    Ok(())
}

/// Journals `messages` API messages as the ingest mode sends them; returns the last seq.
fn journal(store: &Store, dir: &std::path::Path, messages: u64) -> anyhow::Result<u64> {
    let blobs = Blobs::open(dir)?;
    let headers = hyper::HeaderMap::new();
    let region = deskgate::identity::Region::parse(None).map_err(anyhow::Error::msg)?;
    let body = crate::load::Target::api("127.0.0.1:9".parse()?, "bench".to_owned()).body;
    let start = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
    let mut records = Vec::with_capacity(messages as usize);
    for i in 0..messages {
        let (connection, n) = ((i as usize) % CONNECTIONS, i / CONNECTIONS as u64);
        let request = HookRequest {
            channel_id: "api",
            headers: &headers,
            body: body(connection, n),
            // Ten messages a millisecond: about the ingest mode's rate.
            received_at: start + chrono::Duration::microseconds(i as i64 * 100),
            blobs: &blobs,
            region,
        };
        let inbound = deskgate::channels::api::parse(&request)
            .map_err(|e| anyhow::anyhow!("the bench's own message does not parse: {e}"))?;
        let record = Record::Inbound(Box::new(inbound));
        records.push((i + 1, DedupeKey::of(&record), record));
    }
    for chunk in records.chunks(256) {
        store.journal_append(chunk.iter().map(|(seq, key, record)| (*seq, key, record)))?;
    }
    store.flush()?;
    Ok(messages)
}

/// The baseline: every record read back and decoded, in the processor's batch size.
fn read_all(store: &Store, last: u64) -> anyhow::Result<()> {
    let batch = deskgate::config::EventsConfig::default().processor_batch;
    let mut cursor = 0;
    while cursor < last {
        let items = store.journal_read(cursor, last, batch)?;
        for item in &items {
            item.record.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        cursor = items.last().context("the journal ends early")?.seq;
    }
    Ok(())
}

/// Applies the whole journal; returns how long it took and what it asked of the state.
fn apply_all(
    store: &Store,
    dir: &std::path::Path,
    last: u64,
    batch: Option<usize>,
    replay: bool,
) -> anyhow::Result<(Duration, deskgate::store::StateOps)> {
    let config = crate::servers::deskgate_config(0, dir, "")?;
    let instance = uuid::Uuid::new_v4();
    let outbox = OutboxWriter::new(config.events.source(instance), instance);
    let live = LiveHandle::new(Live::compile(&config, None).map_err(anyhow::Error::msg)?);
    let processor = Processor::new(
        store.clone(),
        Minter::new(instance),
        outbox,
        batch.unwrap_or(config.events.processor_batch),
    )
    .with_live(live);
    let before = store.state_ops();
    let started = Instant::now();
    if replay {
        // As the daemon starts with a backlog: the journal writer has nothing to add.
        let (durable, durable_rx) = tokio::sync::watch::channel(last);
        let start = Position {
            cursor: 0,
            outbox: 0,
        };
        let (visible, visible_rx) = tokio::sync::watch::channel(start);
        let thread = deskgate::processor::start(processor, durable_rx, visible);
        drop(durable);
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the processor's thread panicked"))?;
        let cursor = visible_rx.borrow().cursor;
        anyhow::ensure!(
            cursor == last,
            "the processor stopped at {cursor} of {last}"
        );
    } else {
        let mut cursor = 0;
        while cursor < last {
            cursor = processor.step(cursor, last)?.cursor;
        }
    }
    let took = started.elapsed();
    let after = store.state_ops();
    let ops = after.since(&before);
    Ok((took, ops))
}
