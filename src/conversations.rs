//! Conversations and the tickets they belong to: which thread a message continues.
//!
//! A conversation is one thread on one channel (an API thread id, later an email thread or a
//! chat visitor). Its first message opens a ticket; later messages are added to that ticket.
//!
//! Email threads by every Message-ID a mail is or refers to, whatever the order mails arrive
//! in: see [`email`]. Chosen mails of a conversation can be split off into a new one, their
//! replies and their part of the index with them: see [`split`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::data::Direction;
use crate::ids::Minter;
use crate::model::{Inbound, MessageKind, Routing, Ticket};
use crate::store::{keys, StateBatch, StoreError};

pub mod email;
pub mod split;

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
    /// Until when the platform lets the business answer (Messenger, WhatsApp: 24 hours after
    /// the customer's last message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_window_ends_at: Option<DateTime<Utc>>,
    /// Messenger's human-agent window (7 days after the customer's last message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_agent_window_ends_at: Option<DateTime<Utc>>,
    /// The conversation whose mails this one was split off from (the first of a chain of
    /// splits), so that threading tells a split thread from two threads joined by a late mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_from: Option<String>,
}

/// `outbound` for the business's own messages echoed by the platform, else `inbound`.
pub fn direction(inbound: &Inbound) -> Direction {
    if inbound.kind == MessageKind::Echo {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}

/// Moves the conversation's reply windows on from a customer message. Windows count from when
/// the platform says the customer wrote (else when deskgate received it), never from the clock,
/// so a replay computes the same; an older message arriving late never shortens them.
fn open_reply_windows(conversation: &mut Conversation, inbound: &Inbound) {
    let Some(window) = inbound
        .reply_window
        .filter(|_| inbound.kind != MessageKind::Echo)
    else {
        return;
    };
    let from = inbound.sent_at.unwrap_or(inbound.received_at);
    let extend = |current: &mut Option<DateTime<Utc>>, secs: u64| {
        let Some(ends) = i64::try_from(secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|window| from.checked_add_signed(window))
        else {
            return;
        };
        if current.is_none_or(|c| c < ends) {
            *current = Some(ends);
        }
    };
    extend(&mut conversation.reply_window_ends_at, window.standard_secs);
    if let Some(secs) = window.human_agent_secs {
        extend(&mut conversation.human_agent_window_ends_at, secs);
    }
}

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threaded {
    pub conversation: Conversation,
    pub ticket: Ticket,
    /// The message opened the ticket.
    pub new_ticket: bool,
    /// Other tickets the message proved to be the same thread (an email referring to mails of
    /// several tickets): a merge to suggest, never made here.
    pub merge_with: Vec<String>,
}

/// Puts a message on its conversation, opening a conversation and ticket when the thread is new.
/// `ticket_tag` is `outbound.ticket_tag`, for mail that names its ticket only by the subject.
pub fn thread(
    batch: &mut StateBatch<'_>,
    minter: &Minter,
    inbound: &Inbound,
    contact_id: &str,
    ticket_tag: &str,
) -> Result<Threaded, StoreError> {
    let thread_key = keys::thread(&inbound.channel, &inbound.thread_key);
    let found = match &inbound.email {
        Some(_) => email::find(batch, inbound, contact_id, ticket_tag)?,
        None => email::Found {
            conversation: existing(batch, batch.get::<String>(&thread_key)?)?,
            merge_with: Vec::new(),
        },
    };
    let mut threaded = continue_or_open(batch, minter, inbound, contact_id, found.conversation)?;
    if inbound.email.is_some() {
        email::index(batch, inbound, &threaded.conversation.id)?;
    }
    if !found.merge_with.is_empty() {
        email::remember_suggestion(&mut threaded.ticket, &found.merge_with);
        batch.put(keys::ticket(&threaded.ticket.id), &threaded.ticket);
        threaded.merge_with = found.merge_with;
    }
    Ok(threaded)
}

/// Removes the Message-IDs indexed for a conversation that deskgate forgets, each only while
/// it still names this conversation (the same Message-ID seen again later may name another),
/// and the reply links of its mails.
pub fn forget_email_ids(batch: &mut StateBatch<'_>, conversation: &str) -> Result<(), StoreError> {
    split::forget(batch, conversation)?;
    let prefix = keys::conversation_email_ids(conversation);
    for key in batch.keys_with_prefix(&prefix)? {
        let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        if let Some((channel, message_id)) = rest.split_once('\0') {
            let index = keys::email_message(channel, message_id);
            if batch.get::<String>(&index)?.as_deref() == Some(conversation) {
                batch.remove(index);
            }
        }
        batch.remove(key);
    }
    Ok(())
}

/// The conversation id, if that conversation still exists.
fn existing(batch: &StateBatch<'_>, id: Option<String>) -> Result<Option<String>, StoreError> {
    match id {
        Some(id) if batch.contains(&keys::conversation(&id))? => Ok(Some(id)),
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
        open_reply_windows(&mut conversation, inbound);
        ticket.updated_at = at;
        batch.put(keys::conversation(&conversation.id), &conversation);
        batch.put(keys::ticket(&ticket.id), &ticket);
        return Ok(Threaded {
            conversation,
            ticket,
            new_ticket: false,
            merge_with: Vec::new(),
        });
    }
    let conversation_id = minter.mint(batch, "conversation")?;
    let id = minter.mint(batch, "ticket")?;
    let ticket = Ticket {
        number: next_ticket_number(batch, &id)?,
        id,
        contact_id: contact_id.to_owned(),
        channel: inbound.channel.clone(),
        subject: inbound.subject.clone(),
        conversations: vec![conversation_id.clone()],
        created_at: at,
        updated_at: at,
        merge_suggested: Vec::new(),
        participants: Vec::new(),
        // Routed by the tickets step, right after threading.
        routing: Routing::default(),
        closed_at: None,
    };
    let mut conversation = Conversation {
        id: conversation_id,
        channel: inbound.channel.clone(),
        thread_key: inbound.thread_key.clone(),
        contact_id: contact_id.to_owned(),
        ticket_id: ticket.id.clone(),
        created_at: at,
        last_message_at: at,
        messages: 1,
        reply_window_ends_at: None,
        human_agent_window_ends_at: None,
        split_from: None,
    };
    open_reply_windows(&mut conversation, inbound);
    batch.put(thread_key, &conversation.id);
    batch.put(keys::conversation(&conversation.id), &conversation);
    batch.put(keys::ticket(&ticket.id), &ticket);
    batch.put(keys::contact_ticket(contact_id, &ticket.id), &());
    Ok(Threaded {
        conversation,
        ticket,
        new_ticket: true,
        merge_with: Vec::new(),
    })
}

/// Gives the next ticket number to ticket `id` and indexes it. Part of the step, so a replay
/// gives the same numbers and a number once committed is never given again.
pub fn next_ticket_number(batch: &mut StateBatch<'_>, id: &str) -> Result<u64, StoreError> {
    let number = batch.next(keys::TICKET_NUMBER)?;
    batch.put(keys::ticket_number(number), &id.to_owned());
    Ok(number)
}

/// Removes a ticket's number from the index (the ticket is gone); the number is not reused.
pub fn forget_ticket_number(batch: &mut StateBatch<'_>, ticket: &Ticket) {
    if ticket.number != 0 {
        batch.remove(keys::ticket_number(ticket.number));
    }
}

/// The ticket a number names, if it still exists.
pub fn ticket_by_number(batch: &StateBatch<'_>, number: u64) -> Result<Option<Ticket>, StoreError> {
    match batch.get::<String>(&keys::ticket_number(number))? {
        Some(id) => batch.get::<Ticket>(&keys::ticket(&id)),
        None => Ok(None),
    }
}

fn required<T: crate::store::StateValue>(
    batch: &StateBatch<'_>,
    key: &[u8],
) -> Result<T, StoreError> {
    batch.get(key)?.ok_or_else(|| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "referenced but missing".to_owned(),
    })
}
