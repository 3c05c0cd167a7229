//! What each event does to the tables (the table in the module's comment of `main.rs`), with
//! the fields of each event's `data` this store reads.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Deserialize;

use crate::{Envelope, Result};

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
    sent_at: Option<String>,
    received_at: String,
    #[serde(default)]
    spam: bool,
    #[serde(default)]
    imported: bool,
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

/// `conversation.closed`, `conversation.reopened`, `conversation.spam`,
/// `conversation.spam_undone`.
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

fn data<T: serde::de::DeserializeOwned>(event: &Envelope) -> Result<T> {
    serde_json::from_value(event.data.clone())
        .map_err(|e| format!("{} {}: data: {e}", event.event_type, event.sequence).into())
}

/// Applies one event inside the page's transaction.
pub(crate) fn apply(tx: &Transaction<'_>, event: &Envelope) -> Result<()> {
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
            message_added(tx, &data(event)?)?;
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
        "conversation.closed" | "conversation.reopened" => {
            let change: ConversationChange = data(event)?;
            let closed = kind == "conversation.closed";
            let sql = "UPDATE conversations SET closed = ?2 WHERE id = ?1";
            tx.execute(sql, params![change.conversation, closed])?;
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

fn message_added(tx: &Transaction<'_>, added: &MessageAdded) -> Result<()> {
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
        "INSERT INTO conversations (id, ticket_id, channel, thread_id)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET ticket_id = COALESCE(excluded.ticket_id, ticket_id),
             thread_id = excluded.thread_id",
        params![
            conversation.id,
            ticket,
            conversation.channel,
            conversation.thread_id
        ],
    )?;
    // A message never opens a closed conversation here: `conversation.reopened` follows the
    // message event when deskgate reopened it.
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
