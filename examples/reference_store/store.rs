//! The tables and the cursor rule: a page of events and the cursor move in one transaction.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{apply, Envelope, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cursor (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    source TEXT NOT NULL,
    last_sequence INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS applied_events (
    id TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id TEXT PRIMARY KEY,
    name TEXT,
    owner TEXT,
    created_at TEXT,
    merged_into TEXT,
    erased INTEGER NOT NULL DEFAULT 0,
    spam INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS contact_identities (
    kind TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT '',
    value TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (kind, channel, value)
);
CREATE INDEX IF NOT EXISTS contact_identities_contact ON contact_identities (contact_id);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    contact_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    subject TEXT,
    pipeline TEXT,
    status TEXT,
    owner TEXT,
    priority TEXT,
    category TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    merged_into TEXT,
    split_from TEXT,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tickets_contact ON tickets (contact_id);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    ticket_id TEXT,
    channel TEXT NOT NULL,
    thread_id TEXT,
    closed INTEGER NOT NULL DEFAULT 0,
    spam INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS conversations_ticket ON conversations (ticket_id);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    contact_id TEXT,
    channel TEXT NOT NULL,
    external_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    sender_name TEXT,
    subject TEXT,
    text TEXT NOT NULL,
    html TEXT,
    sent_at TEXT,
    received_at TEXT NOT NULL,
    spam INTEGER NOT NULL DEFAULT 0,
    imported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation_id);
CREATE TABLE IF NOT EXISTS deliveries (
    channel TEXT NOT NULL,
    platform_message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    occurred_at TEXT,
    conversation_id TEXT,
    PRIMARY KEY (channel, platform_message_id, status)
);
";

/// Opens (or creates) the database with the durability the cursor rule needs.
pub(crate) fn open(path: &std::path::Path) -> Result<Connection> {
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.busy_timeout(Duration::from_secs(10))?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

/// The last sequence applied and the source it belongs to.
pub(crate) fn cursor(db: &Connection) -> Result<(u64, Option<String>)> {
    let row = db
        .query_row("SELECT last_sequence, source FROM cursor", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .optional()?;
    Ok(row.map_or((0, None), |(seq, source)| (seq as u64, Some(source))))
}

/// Applies a page of events and moves the cursor, in one transaction. Returns the new cursor.
pub(crate) fn apply_page(db: &mut Connection, events: &[Envelope]) -> Result<u64> {
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (mut last, mut source) = cursor(&tx)?;
    for event in events {
        let seq = event.seq()?;
        match &source {
            Some(known) if *known != event.source => {
                return Err(format!(
                    "event {seq} is from {}, but this store follows {known}: refusing to mix \
                     two instances' histories",
                    event.source
                )
                .into())
            }
            _ => source = Some(event.source.clone()),
        }
        if seq <= last {
            continue;
        }
        if seq != last + 1 {
            eprintln!(
                "reference_store: gap: events {}..{} were removed by retention before this \
                 store read them",
                last + 1,
                seq - 1
            );
        }
        let fresh = tx.execute(
            "INSERT OR IGNORE INTO applied_events VALUES (?1, ?2, ?3)",
            params![event.id, seq as i64, event.event_type],
        )?;
        if fresh == 1 {
            apply::apply(&tx, event)?;
        }
        last = seq;
    }
    if let Some(source) = source {
        tx.execute(
            "INSERT INTO cursor VALUES (0, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET last_sequence = excluded.last_sequence",
            params![source, last as i64],
        )?;
    }
    tx.commit()?;
    Ok(last)
}
