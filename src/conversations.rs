//! Conversations and the tickets they belong to: which thread a message continues.
//!
//! A conversation is one thread on one channel (an API thread id, later an email thread or a
//! chat visitor). Its first message opens a ticket; later messages are added to that ticket.
//!
//! Email threads by Message-ID: a mail whose In-Reply-To or References names a message already
//! seen on the channel (or one deskgate sent, whose Message-ID names its conversation), or a
//! bounce whose returned headers do, continues that conversation. Every mail's own Message-ID
//! is indexed so that later replies find it.

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
    let thread_key = keys::thread(&inbound.channel, &inbound.thread_key);
    let known = match &inbound.email {
        Some(_) => email_conversation(batch, inbound)?,
        None => existing(batch, batch.get::<String>(&thread_key)?)?,
    };
    let threaded = continue_or_open(batch, minter, inbound, contact_id, known)?;
    if let Some(email) = &inbound.email {
        batch.put(
            keys::email_message(&inbound.channel, &email.message_id),
            &threaded.conversation.id,
        );
    }
    Ok(threaded)
}

/// The conversation an email continues: the newest message it names that deskgate knows.
fn email_conversation(
    batch: &StateBatch<'_>,
    inbound: &Inbound,
) -> Result<Option<String>, StoreError> {
    let Some(email) = &inbound.email else {
        return Ok(None);
    };
    // In-Reply-To names the direct parent; References runs oldest to newest; a bounce names
    // the mail that failed.
    let named = email
        .in_reply_to
        .iter()
        .chain(email.references.iter().rev())
        .chain(
            inbound
                .flags
                .bounce
                .iter()
                .flat_map(|b| b.message_id.iter()),
        );
    for message_id in named {
        let candidate = match crate::channels::email::own_conversation_of(message_id) {
            Some(own) => Some(own),
            None => batch.get::<String>(&keys::email_message(&inbound.channel, message_id))?,
        };
        // A deleted conversation leaves its index entries behind: they name nothing now.
        if let Some(conversation) = existing(batch, candidate)? {
            return Ok(Some(conversation));
        }
    }
    Ok(None)
}

/// The conversation id, if that conversation still exists.
fn existing(batch: &StateBatch<'_>, id: Option<String>) -> Result<Option<String>, StoreError> {
    match id {
        Some(id) if batch.get_raw(&keys::conversation(&id))?.is_some() => Ok(Some(id)),
        _ => Ok(None),
    }
}

fn continue_or_open(
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    inbound: &Inbound,
    contact_id: &str,
    known: Option<String>,
) -> Result<Threaded, StoreError> {
    let at = inbound.received_at;
    let thread_key = keys::thread(&inbound.channel, &inbound.thread_key);
    if let Some(conversation_id) = known {
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
