//! Non-message items from channels: delivery statuses (sent, delivered, read, played, failed)
//! become `deskgate.message.delivery_status` events; other platform notices (template, account,
//! call events, deleted messages) become `deskgate.channel.event` events. Neither opens a
//! ticket or touches a contact.
//!
//! When the item concerns a conversation deskgate knows, the event's subject is that
//! conversation's ticket; otherwise (a status for a message sent before deskgate, or from
//! elsewhere) it names the channel and thread, and the event still goes out.

use crate::conversations::Conversation;
use crate::events::data::{ChannelNotice, EventData, Micros};
use crate::events::{EventDraft, OutboxWriter};
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
    let data = ChannelNotice {
        journal_seq: seq,
        channel: event.channel.clone(),
        external_id: event.external_id.clone(),
        name: event.name.clone(),
        status: event.status.clone(),
        message_ids: event.message_ids.clone(),
        customer: event.sender.clone(),
        conversation_id: conversation.as_ref().map(|c| c.id.clone()),
        ticket_id: conversation.as_ref().map(|c| c.ticket_id.clone()),
        thread_id: event.thread_key.clone(),
        detail: event.detail.clone(),
        occurred_at: event.occurred_at.map(Micros),
        received_at: Micros(event.received_at),
    };
    let data = match event.kind {
        ChannelEventKind::DeliveryStatus => EventData::MessageDeliveryStatus(data),
        ChannelEventKind::Other => EventData::ChannelEvent(data),
    };
    let draft = EventDraft::new(subject, Some(&event.channel), data);
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
