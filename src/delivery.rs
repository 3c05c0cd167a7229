//! Non-message items from channels: delivery statuses (sent, delivered, read, played, failed)
//! become `deskgate.message.delivery_status` events; other platform notices (template, account,
//! call events, deleted messages) become `deskgate.channel.event` events. Neither opens a
//! ticket or touches a contact.
//!
//! When the item concerns a conversation deskgate knows, the event's subject is that
//! conversation's ticket; otherwise (a status for a message sent before deskgate, or from
//! elsewhere) it names the channel and thread, and the event still goes out.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::conversations::Conversation;
use crate::events::{EventDraft, EventType, OutboxWriter};
use crate::model::{ChannelEvent, ChannelEventKind};
use crate::store::{keys, StateBatch, StoreError};

/// Applies one non-message record: one event in the outbox.
pub fn apply(
    batch: &mut StateBatch<'_>,
    outbox: &OutboxWriter,
    seq: u64,
    event: &ChannelEvent,
) -> Result<(), StoreError> {
    let conversation = match &event.thread_key {
        Some(thread_key) => known_conversation(batch, &event.channel, thread_key)?,
        None => None,
    };
    let subject = match &conversation {
        Some(conversation) => conversation.ticket_id.clone(),
        None => format!(
            "channel/{}/{}",
            event.channel,
            event.thread_key.as_deref().unwrap_or(&event.external_id)
        ),
    };
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let event_type = match event.kind {
        ChannelEventKind::DeliveryStatus => EventType::MessageDeliveryStatus,
        ChannelEventKind::Other => EventType::ChannelEvent,
    };
    let draft = EventDraft {
        event_type,
        subject,
        channel: Some(event.channel.clone()),
        data: json!({
            "journal_seq": seq,
            "channel": event.channel,
            "external_id": event.external_id,
            "name": event.name,
            "status": event.status,
            "message_ids": event.message_ids,
            "customer": event.sender,
            "conversation_id": conversation.as_ref().map(|c| &c.id),
            "ticket_id": conversation.as_ref().map(|c| &c.ticket_id),
            "thread_id": event.thread_key,
            "detail": event.detail,
            "occurred_at": event.occurred_at.map(time),
            "received_at": time(event.received_at),
        }),
    };
    outbox.push(batch, event.received_at, &draft)?;
    Ok(())
}

fn known_conversation(
    batch: &StateBatch<'_>,
    channel: &str,
    thread_key: &str,
) -> Result<Option<Conversation>, StoreError> {
    let Some(id) = batch.get::<String>(&keys::thread(channel, thread_key))? else {
        return Ok(None);
    };
    batch.get(&keys::conversation(&id))
}
