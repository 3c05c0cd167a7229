//! Conversations and the tickets they belong to: which thread a message continues.
//!
//! A conversation is one thread on one channel (an API thread id, later an email thread or a
//! chat visitor). Its first message opens a ticket; later messages are added to that ticket.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::Minter;
use crate::model::Inbound;
use crate::store::{keys, StateBatch, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub channel: String,
    pub thread_key: String,
    pub contact_id: String,
    pub ticket_id: String,
    pub created_at: DateTime<Utc>,
    pub last_message_at: DateTime<Utc>,
    pub messages: u64,
}

/// deskgate's mirror of a ticket; the ticket store owns the real one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub contact_id: String,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub conversations: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threaded {
    pub conversation: Conversation,
    pub ticket: Ticket,
    /// The message opened the ticket.
    pub new_ticket: bool,
}

/// Puts a message on its conversation, opening a conversation and ticket when the thread is new.
pub fn thread(
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    inbound: &Inbound,
    contact_id: &str,
) -> Result<Threaded, StoreError> {
    let at = inbound.received_at;
    let thread_key = keys::thread(&inbound.channel, &inbound.thread_key);
    if let Some(conversation_id) = batch.get::<String>(&thread_key)? {
        let mut conversation: Conversation =
            required(batch, &keys::conversation(&conversation_id))?;
        let mut ticket: Ticket = required(batch, &keys::ticket(&conversation.ticket_id))?;
        conversation.last_message_at = at;
        conversation.messages += 1;
        ticket.updated_at = at;
        batch.put(keys::conversation(&conversation.id), &conversation);
        batch.put(keys::ticket(&ticket.id), &ticket);
        return Ok(Threaded {
            conversation,
            ticket,
            new_ticket: false,
        });
    }
    let conversation_id = minter.mint(batch, "conversation")?;
    let ticket = Ticket {
        id: minter.mint(batch, "ticket")?,
        contact_id: contact_id.to_owned(),
        channel: inbound.channel.clone(),
        subject: inbound.subject.clone(),
        conversations: vec![conversation_id.clone()],
        created_at: at,
        updated_at: at,
    };
    let conversation = Conversation {
        id: conversation_id,
        channel: inbound.channel.clone(),
        thread_key: inbound.thread_key.clone(),
        contact_id: contact_id.to_owned(),
        ticket_id: ticket.id.clone(),
        created_at: at,
        last_message_at: at,
        messages: 1,
    };
    batch.put(thread_key, &conversation.id);
    batch.put(keys::conversation(&conversation.id), &conversation);
    batch.put(keys::ticket(&ticket.id), &ticket);
    Ok(Threaded {
        conversation,
        ticket,
        new_ticket: true,
    })
}

fn required<T: serde::de::DeserializeOwned>(
    batch: &StateBatch<'_>,
    key: &[u8],
) -> Result<T, StoreError> {
    batch.get(key)?.ok_or_else(|| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "referenced but missing".to_owned(),
    })
}
