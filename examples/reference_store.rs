//! A reference consumer of deskgate's events: it follows `GET /v1/events` with its own durable
//! cursor and materialises contacts, tickets, conversations and messages into SQLite. It is the
//! ticket store engineers' starting point: a store that applies events this way ends with the
//! same tickets (status, pipeline, owner, number, contact) and contacts (identities, merges,
//! erasures) as deskgate's own view, across kill -9 of either side
//! (`tests/reference_store.rs` checks exactly that).
//!
//! # Running it
//!
//! ```sh
//! cargo run --example reference_store -- --url http://127.0.0.1:8080 --db store.sqlite \
//!     --token-file /run/credentials/deskgate-consumer/token
//! ```
//!
//! `--token-file` holds a control token of deskgate (`[control] token_files`): with
//! `events.require_token` (the default) `/v1/events` answers 401 without it. The consumer runs
//! until killed; it can be killed at any moment (kill -9 included) and started again on the same
//! database. It logs to stderr; `SELECT last_sequence FROM cursor` says how far it got.
//!
//! # The cursor rule
//!
//! Each page of events is applied, and the cursor (`cursor.last_sequence`, the CloudEvent
//! `sequence` of the last event applied) moved, in ONE SQLite transaction (WAL journal,
//! `synchronous = FULL`, so a commit is on disk before the next request). A crash before the
//! commit leaves neither the effects nor the cursor; after it, both. The next request asks for
//! `after = last_sequence`, so nothing is lost or applied twice. Each applied event's `id` is
//! kept too (`applied_events`) and an event whose id is there is skipped: the same guarantee
//! again for a store fed by a second path (a JetStream consumer delivering the same events,
//! `Nats-Msg-Id` = event `id`).
//!
//! # Ordering relied on
//!
//! - Events of one deskgate instance (one `source`) have contiguous sequence numbers, and are in
//!   the order deskgate applied their causes. This consumer applies them in that order, one at a
//!   time, so it never sees a ticket event before the ticket exists or a merge before its
//!   contacts. A jump in `sequence` means outbox retention removed events this consumer never
//!   read: it is logged (`gap`), and the store should be rebuilt or reconciled through the
//!   control API.
//! - Events of one processor step come out together and in a fixed order: a message's contact
//!   events (`contact.created`, `.updated`, `.merged`) before its message event, whose `ticket`
//!   is the ticket's state *after* the step (routing included), then the step's
//!   `ticket.assigned` / `status_trigger` events. Applying each as "set to this value" is
//!   therefore right whatever the order inside the step.
//! - The cursor must belong to one `source`: a consumer pointed at another instance (or at a
//!   state directory that was recreated, whose sequence starts again at 1) stops with an error
//!   instead of mixing two histories.
//!
//! # What each event does to the tables
//!
//! | event | effect |
//! | --- | --- |
//! | `contact.created`, `contact.updated` | the contact is replaced by `data.contact` (name, owner, identities) |
//! | `contact.merged` | the survivor is replaced by `data.contact`; each absorbed contact gets `merged_into`, loses its identities, and its tickets and messages move to the survivor |
//! | `contact.erased` | the contact keeps its id only (`erased = 1`); its identities go; the messages of `data.conversations` and of the contact lose subject, text, HTML and sender name |
//! | `contact.spam_undone` | the contact's and the named conversations' spam flags are lifted |
//! | `ticket.created`, `ticket.message_added`, `conversation.message_added` | the ticket is replaced by `data.ticket` (number, contact, pipeline, status, owner, …), the conversation is put on that ticket, the message is added (sender's contact looked up by identity) |
//! | `ticket.assigned` | owner |
//! | `ticket.status_trigger`, `ticket.status_changed` | status and pipeline |
//! | `ticket.merged` | the merged ticket gets `merged_into`; its conversations move to the survivor |
//! | `ticket.split` | a new ticket with the old one's contact, channel and subject, its own number and `data.routing`; the conversation (or for a split by message, a new conversation with the moved messages) goes to it |
//! | `ticket.deleted` | the ticket and its conversations get `deleted = 1` |
//! | `conversation.closed`, `conversation.spam`, `conversation.spam_undone` | the conversation's `closed` / `spam` flags (and the sender's spam flag) |
//! | `message.delivery_status` | a row in `deliveries` for each platform message id |
//!
//! Deliberately ignored, each for a reason:
//! - `contact.merge_suggested`, `ticket.merge_suggested`: suggestions for people; nothing
//!   changed (a store would show them to agents).
//! - `ticket.action_requested`, `outbound.sent`, `.failed`, `.suppressed`, `.chat_message`:
//!   mail and replies deskgate sends; they change no ticket or contact (a `status_trigger`
//!   follows when an agent's reply moved the ticket).
//! - `channel.event`: platform notices that are not messages (templates, account updates).
//! - `inbound.quarantined`, `sink.dead_lettered`, `sink.disabled`: operations, for people and
//!   alerts, not for the store's data.
//!
//! Nothing in the events says when deskgate forgets a ticket closed longer than
//! `routing.closed_retention_secs` or purges a spam conversation after
//! `routing.spam_retention_days`: the store keeps its copy, as it should.
//!
//! # Why its own types and not `deskgate::events::data`
//!
//! The event data types in deskgate (`deskgate::events::data`) are the producer's: they only
//! serialise (no `Deserialize`), and their fields are deskgate's internal types (`Contact`,
//! `Ticket`, `TicketState`) that change with the daemon. A ticket store is another program,
//! usually in another language, built against the JSON Schemas in `schemas/events/`. So this
//! example declares, with serde, only the fields it reads and ignores the rest: a field added
//! to an event later does not break it, which is how every store should read the contract.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Deserialize;
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(about = "Follows deskgate's events into a SQLite ticket store")]
struct Args {
    /// deskgate's base URL (`http://127.0.0.1:8080`).
    #[arg(long)]
    url: String,
    /// The SQLite database (created when missing).
    #[arg(long)]
    db: PathBuf,
    /// A file holding a control token, sent as a bearer token to `/v1/events`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Events per page.
    #[arg(long, default_value_t = 500)]
    limit: usize,
    /// How long one request waits for new events, in seconds.
    #[arg(long, default_value_t = 10)]
    wait_secs: u64,
}

/// The tables. Ids are deskgate's (UUIDs as text); times are the events' RFC 3339 strings.
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
    deleted INTEGER NOT NULL DEFAULT 0,
    -- Its first message was forwarded: a customer's reply on it does not reopen it.
    from_forward INTEGER NOT NULL DEFAULT 0
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

/// The CloudEvents envelope, as far as the store reads it.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    time: String,
    sequence: String,
    #[serde(default)]
    data: Value,
}

/// `{"kind": "email", "address": …}`, `{"kind": "phone", "number": …}`,
/// `{"kind": "channel", "channel": …, "id": …}`.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Identity {
    Email {
        address: String,
    },
    Phone {
        number: String,
    },
    Channel {
        channel: String,
        id: String,
    },
    #[serde(other)]
    Unknown,
}

impl Identity {
    /// `(kind, channel, value)` as the identities table keys it; `None` for a kind this
    /// consumer does not know yet.
    fn key(&self) -> Option<(&str, &str, &str)> {
        match self {
            Identity::Email { address } => Some(("email", "", address)),
            Identity::Phone { number } => Some(("phone", "", number)),
            Identity::Channel { channel, id } => Some(("channel", channel, id)),
            Identity::Unknown => None,
        }
    }
}

#[derive(Deserialize)]
struct Contact {
    id: String,
    name: Option<String>,
    #[serde(default)]
    identities: Vec<Identity>,
    owner: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct WithContact {
    contact: Contact,
}

#[derive(Deserialize)]
struct ContactMerged {
    surviving: String,
    absorbed: Vec<String>,
    contact: Contact,
}

#[derive(Deserialize)]
struct ContactErased {
    contact_id: String,
    #[serde(default)]
    conversations: Vec<String>,
}

#[derive(Deserialize)]
struct ContactSpamUndone {
    contact: String,
    #[serde(default)]
    conversations: Vec<String>,
}

/// A ticket's routing fields: in message events (flattened into `ticket`) and in
/// `ticket.split`'s `routing`.
#[derive(Deserialize, Default)]
struct Routing {
    pipeline: Option<String>,
    status: Option<String>,
    owner: Option<String>,
    priority: Option<String>,
    category: Option<String>,
}

#[derive(Deserialize)]
struct TicketView {
    id: String,
    #[serde(default)]
    number: i64,
    contact_id: String,
    channel: String,
    subject: Option<String>,
    created_at: String,
    updated_at: String,
    #[serde(flatten)]
    routing: Routing,
}

#[derive(Deserialize)]
struct ConversationRef {
    id: String,
    channel: String,
    thread_id: Option<String>,
}

#[derive(Deserialize)]
struct Sender {
    name: Option<String>,
    #[serde(default)]
    identities: Vec<Identity>,
}

#[derive(Deserialize)]
struct MessageView {
    id: String,
    direction: String,
    channel: String,
    external_id: String,
    from: Sender,
    #[serde(default = "message_kind")]
    kind: String,
    subject: Option<String>,
    #[serde(default)]
    text: String,
    html: Option<String>,
    #[serde(default)]
    flags: Flags,
    sent_at: Option<String>,
    received_at: String,
    #[serde(default)]
    spam: bool,
    #[serde(default)]
    imported: bool,
}

impl MessageView {
    /// Something the customer wrote (not automatic mail, a bounce, a forward, an echo of the
    /// business's own message, a reaction or a button), live (not a spam sender's, not
    /// history): deskgate reopens a closed conversation on such a message.
    fn reopens(&self) -> bool {
        let flags = &self.flags;
        self.kind == "message"
            && !(flags.automatic || flags.forwarded || flags.bounce.is_some())
            && !(self.spam || self.imported)
    }
}

#[derive(Deserialize, Default)]
struct Flags {
    #[serde(default)]
    automatic: bool,
    bounce: Option<Value>,
    #[serde(default)]
    forwarded: bool,
}

fn message_kind() -> String {
    "message".to_owned()
}

#[derive(Deserialize)]
struct MessageAdded {
    ticket: Option<TicketView>,
    conversation: ConversationRef,
    message: MessageView,
}

#[derive(Deserialize)]
struct TicketAssigned {
    ticket: String,
    assignee: Option<String>,
}

/// `ticket.status_trigger` and `ticket.status_changed`.
#[derive(Deserialize)]
struct TicketStatus {
    ticket: String,
    new_status: String,
    pipeline: Option<String>,
}

#[derive(Deserialize)]
struct TicketMerged {
    ticket: String,
    merged: String,
}

#[derive(Deserialize)]
struct TicketSplit {
    ticket: String,
    new_ticket: String,
    new_ticket_number: i64,
    conversation: String,
    from_conversation: Option<String>,
    messages: Option<Vec<String>>,
    #[serde(default)]
    routing: Routing,
}

#[derive(Deserialize)]
struct TicketDeleted {
    ticket: String,
    #[serde(default)]
    conversations: Vec<String>,
}

/// `conversation.closed`, `conversation.spam`, `conversation.spam_undone`.
#[derive(Deserialize)]
struct ConversationChange {
    conversation: String,
    contact: Option<String>,
}

#[derive(Deserialize)]
struct DeliveryStatus {
    channel: String,
    status: Option<String>,
    #[serde(default)]
    message_ids: Vec<String>,
    conversation_id: Option<String>,
    occurred_at: Option<String>,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn data<T: serde::de::DeserializeOwned>(event: &Envelope) -> Result<T> {
    serde_json::from_value(event.data.clone())
        .map_err(|e| format!("{} {}: data: {e}", event.event_type, event.sequence).into())
}

/// Applies one event inside the page's transaction.
fn apply(tx: &Transaction<'_>, event: &Envelope) -> Result<()> {
    let kind = event
        .event_type
        .strip_prefix("deskgate.")
        .unwrap_or_default();
    match kind {
        "contact.created" | "contact.updated" => {
            put_contact(tx, &data::<WithContact>(event)?.contact)?;
        }
        "contact.merged" => contact_merged(tx, &data(event)?)?,
        "contact.erased" => contact_erased(tx, &data(event)?)?,
        "contact.spam_undone" => {
            let undone: ContactSpamUndone = data(event)?;
            tx.execute(
                "UPDATE contacts SET spam = 0 WHERE id = ?1",
                [&undone.contact],
            )?;
            for id in &undone.conversations {
                tx.execute("UPDATE conversations SET spam = 0 WHERE id = ?1", [id])?;
            }
        }
        "ticket.created" | "ticket.message_added" | "conversation.message_added" => {
            message_added(tx, kind, &data(event)?)?;
        }
        "ticket.assigned" => {
            let assigned: TicketAssigned = data(event)?;
            tx.execute(
                "UPDATE tickets SET owner = ?2, updated_at = ?3 WHERE id = ?1",
                params![assigned.ticket, assigned.assignee, event.time],
            )?;
        }
        "ticket.status_trigger" | "ticket.status_changed" => {
            let status: TicketStatus = data(event)?;
            tx.execute(
                "UPDATE tickets SET status = ?2, pipeline = ?3, updated_at = ?4 WHERE id = ?1",
                params![
                    status.ticket,
                    status.new_status,
                    status.pipeline,
                    event.time
                ],
            )?;
        }
        "ticket.merged" => {
            let merged: TicketMerged = data(event)?;
            tx.execute(
                "UPDATE tickets SET merged_into = ?2, updated_at = ?3 WHERE id = ?1",
                params![merged.merged, merged.ticket, event.time],
            )?;
            // Tickets merged into the merged one earlier now live on the survivor too.
            tx.execute(
                "UPDATE tickets SET merged_into = ?2 WHERE merged_into = ?1",
                params![merged.merged, merged.ticket],
            )?;
            tx.execute(
                "UPDATE conversations SET ticket_id = ?2 WHERE ticket_id = ?1",
                params![merged.merged, merged.ticket],
            )?;
        }
        "ticket.split" => ticket_split(tx, event, &data(event)?)?,
        "ticket.deleted" => {
            let deleted: TicketDeleted = data(event)?;
            tx.execute(
                "UPDATE tickets SET deleted = 1, updated_at = ?2 WHERE id = ?1",
                params![deleted.ticket, event.time],
            )?;
            for id in &deleted.conversations {
                tx.execute("UPDATE conversations SET deleted = 1 WHERE id = ?1", [id])?;
            }
        }
        "conversation.closed" => {
            let closed: ConversationChange = data(event)?;
            let sql = "UPDATE conversations SET closed = 1 WHERE id = ?1";
            tx.execute(sql, [&closed.conversation])?;
        }
        "conversation.spam" | "conversation.spam_undone" => {
            let change: ConversationChange = data(event)?;
            let spam = kind == "conversation.spam";
            let sql = "UPDATE conversations SET spam = ?2 WHERE id = ?1";
            tx.execute(sql, params![change.conversation, spam])?;
            if spam {
                let sql = "UPDATE contacts SET spam = 1 WHERE id = ?1";
                tx.execute(sql, [&change.contact])?;
            }
        }
        "message.delivery_status" => {
            let delivery: DeliveryStatus = data(event)?;
            for id in &delivery.message_ids {
                tx.execute(
                    "INSERT OR REPLACE INTO deliveries VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        delivery.channel,
                        id,
                        delivery.status.as_deref().unwrap_or("unknown"),
                        delivery.occurred_at,
                        delivery.conversation_id
                    ],
                )?;
            }
        }
        // The ignored types, and types newer than this consumer: see the module's comment.
        _ => {}
    }
    Ok(())
}

/// Replaces a contact's row and identities with a snapshot from an event.
fn put_contact(tx: &Transaction<'_>, contact: &Contact) -> Result<()> {
    tx.execute(
        "INSERT INTO contacts (id, name, owner, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, owner = excluded.owner,
             created_at = COALESCE(contacts.created_at, excluded.created_at)",
        params![contact.id, contact.name, contact.owner, contact.created_at],
    )?;
    tx.execute(
        "DELETE FROM contact_identities WHERE contact_id = ?1",
        [&contact.id],
    )?;
    for (kind, channel, value) in contact.identities.iter().filter_map(Identity::key) {
        // An identity belongs to one contact: the newest event saying who holds it wins.
        tx.execute(
            "INSERT OR REPLACE INTO contact_identities VALUES (?1, ?2, ?3, ?4)",
            params![kind, channel, value, contact.id],
        )?;
    }
    Ok(())
}

fn contact_merged(tx: &Transaction<'_>, merged: &ContactMerged) -> Result<()> {
    let survivor = &merged.surviving;
    for absorbed in &merged.absorbed {
        tx.execute(
            "INSERT INTO contacts (id, merged_into) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET merged_into = excluded.merged_into,
                 name = NULL, owner = NULL",
            params![absorbed, survivor],
        )?;
        // Contacts absorbed into this one before point at the survivor now (no chains).
        tx.execute(
            "UPDATE contacts SET merged_into = ?2 WHERE merged_into = ?1",
            params![absorbed, survivor],
        )?;
        tx.execute(
            "DELETE FROM contact_identities WHERE contact_id = ?1",
            [absorbed],
        )?;
        tx.execute(
            "UPDATE tickets SET contact_id = ?2 WHERE contact_id = ?1",
            params![absorbed, survivor],
        )?;
        tx.execute(
            "UPDATE messages SET contact_id = ?2 WHERE contact_id = ?1",
            params![absorbed, survivor],
        )?;
    }
    put_contact(tx, &merged.contact)
}

fn contact_erased(tx: &Transaction<'_>, erased: &ContactErased) -> Result<()> {
    let id = &erased.contact_id;
    tx.execute(
        "INSERT INTO contacts (id, erased) VALUES (?1, 1)
         ON CONFLICT (id) DO UPDATE SET erased = 1, name = NULL, owner = NULL",
        [id],
    )?;
    tx.execute("DELETE FROM contact_identities WHERE contact_id = ?1", [id])?;
    // What the person wrote goes; the rows stay, so tickets keep their history's shape.
    let blank = "UPDATE messages SET subject = NULL, text = '', html = NULL, sender_name = NULL";
    tx.execute(&format!("{blank} WHERE contact_id = ?1"), [id])?;
    for conversation in &erased.conversations {
        tx.execute(
            &format!("{blank} WHERE conversation_id = ?1"),
            [conversation],
        )?;
    }
    Ok(())
}

fn message_added(tx: &Transaction<'_>, kind: &str, added: &MessageAdded) -> Result<()> {
    if let Some(ticket) = &added.ticket {
        let routing = &ticket.routing;
        tx.execute(
            "INSERT INTO tickets (id, number, contact_id, channel, subject, pipeline, status,
                 owner, priority, category, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (id) DO UPDATE SET number = excluded.number,
                 contact_id = excluded.contact_id, subject = excluded.subject,
                 pipeline = excluded.pipeline, status = excluded.status, owner = excluded.owner,
                 priority = excluded.priority, category = excluded.category,
                 updated_at = excluded.updated_at",
            params![
                ticket.id,
                ticket.number,
                ticket.contact_id,
                ticket.channel,
                ticket.subject,
                routing.pipeline,
                routing.status,
                routing.owner,
                routing.priority,
                routing.category,
                ticket.created_at,
                ticket.updated_at
            ],
        )?;
    }
    let conversation = &added.conversation;
    let message = &added.message;
    let ticket = added.ticket.as_ref().map(|t| &t.id);
    tx.execute(
        "INSERT INTO conversations (id, ticket_id, channel, thread_id, from_forward)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET ticket_id = COALESCE(excluded.ticket_id, ticket_id),
             thread_id = excluded.thread_id",
        params![
            conversation.id,
            ticket,
            conversation.channel,
            conversation.thread_id,
            message.flags.forwarded
        ],
    )?;
    // A conversation that opens a ticket is open (a customer's reply on a closed ticket whose
    // pipeline opens new tickets moves the conversation to a new one); a customer's reply
    // reopens a closed conversation of its ticket (no event says so: the rule is deskgate's).
    if kind == "ticket.created" {
        tx.execute(
            "UPDATE conversations SET closed = 0 WHERE id = ?1",
            [&conversation.id],
        )?;
    } else if kind == "ticket.message_added" && message.reopens() {
        tx.execute(
            "UPDATE conversations SET closed = 0 WHERE id = ?1 AND from_forward = 0",
            [&conversation.id],
        )?;
    }
    let contact = sender_contact(tx, &message.from)?;
    tx.execute(
        "INSERT OR IGNORE INTO messages VALUES
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            message.id,
            conversation.id,
            contact,
            message.channel,
            message.external_id,
            message.direction,
            message.kind,
            message.from.name,
            message.subject,
            message.text,
            message.html,
            message.sent_at,
            message.received_at,
            message.spam,
            message.imported
        ],
    )?;
    Ok(())
}

/// The contact holding the first of the sender's identities this store knows: the contact
/// events of the message's step came before it, so the sender is known.
fn sender_contact(tx: &Transaction<'_>, sender: &Sender) -> Result<Option<String>> {
    for (kind, channel, value) in sender.identities.iter().filter_map(Identity::key) {
        let found = tx
            .query_row(
                "SELECT contact_id FROM contact_identities
                 WHERE kind = ?1 AND channel = ?2 AND value = ?3",
                params![kind, channel, value],
                |row| row.get(0),
            )
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn ticket_split(tx: &Transaction<'_>, event: &Envelope, split: &TicketSplit) -> Result<()> {
    let routing = &split.routing;
    // The new ticket is the old one's copy: same contact, channel and subject.
    let copied = tx.execute(
        "INSERT OR IGNORE INTO tickets (id, number, contact_id, channel, subject, pipeline,
             status, owner, priority, category, created_at, updated_at, split_from)
         SELECT ?2, ?3, contact_id, channel, subject, ?4, ?5, ?6, ?7, ?8, ?9, ?9, id
         FROM tickets WHERE id = ?1",
        params![
            split.ticket,
            split.new_ticket,
            split.new_ticket_number,
            routing.pipeline,
            routing.status,
            routing.owner,
            routing.priority,
            routing.category,
            event.time
        ],
    )?;
    if copied == 0 {
        return Err(format!(
            "ticket.split {}: unknown ticket {}",
            event.sequence, split.ticket
        )
        .into());
    }
    match (&split.from_conversation, &split.messages) {
        (Some(from), Some(messages)) => {
            // A split by message: a new conversation on the new ticket takes the messages.
            tx.execute(
                "INSERT OR IGNORE INTO conversations (id, ticket_id, channel, thread_id)
                 SELECT ?2, ?3, channel, NULL FROM conversations WHERE id = ?1",
                params![from, split.conversation, split.new_ticket],
            )?;
            for message in messages {
                tx.execute(
                    "UPDATE messages SET conversation_id = ?2 WHERE id = ?1",
                    params![message, split.conversation],
                )?;
            }
        }
        _ => {
            tx.execute(
                "UPDATE conversations SET ticket_id = ?2 WHERE id = ?1",
                params![split.conversation, split.new_ticket],
            )?;
        }
    }
    Ok(())
}

/// Opens (or creates) the database with the durability the cursor rule needs.
fn open(path: &std::path::Path) -> Result<Connection> {
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.busy_timeout(Duration::from_secs(10))?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

/// The last sequence applied and the source it belongs to.
fn cursor(db: &Connection) -> Result<(u64, Option<String>)> {
    let row = db
        .query_row("SELECT last_sequence, source FROM cursor", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .optional()?;
    Ok(row.map_or((0, None), |(seq, source)| (seq as u64, Some(source))))
}

/// Applies a page of events and moves the cursor, in one transaction. Returns the new cursor.
fn apply_page(db: &mut Connection, events: &[Envelope]) -> Result<u64> {
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (mut last, mut source) = cursor(&tx)?;
    for event in events {
        let seq: u64 = event
            .sequence
            .parse()
            .map_err(|e| format!("sequence {:?}: {e}", event.sequence))?;
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
            apply(&tx, event)?;
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

#[derive(Deserialize)]
struct Page {
    events: Vec<Envelope>,
}

/// Asks for the events after `after`; `Err` for anything but a page of events.
async fn fetch(
    client: &reqwest::Client,
    args: &Args,
    token: Option<&str>,
    after: u64,
) -> Result<Vec<Envelope>> {
    let url = format!(
        "{}/v1/events?after={after}&limit={}&wait={}",
        args.url.trim_end_matches('/'),
        args.limit,
        args.wait_secs
    );
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?.error_for_status()?;
    Ok(response.json::<Page>().await?.events)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reference_store: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    let token = match &args.token_file {
        Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
        None => None,
    };
    let mut db = open(&args.db)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.wait_secs + 10))
        .build()?;
    let (mut after, _) = cursor(&db)?;
    eprintln!("reference_store: following {} after {after}", args.url);
    let mut backoff = Duration::from_millis(100);
    loop {
        match fetch(&client, args, token.as_deref(), after).await {
            Ok(events) => {
                backoff = Duration::from_millis(100);
                if !events.is_empty() {
                    after = apply_page(&mut db, &events)?;
                }
            }
            Err(error) => {
                // deskgate restarting, or the network: try again, a little later each time.
                eprintln!("reference_store: reading events: {error}; again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
