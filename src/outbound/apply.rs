//! The processor's half of sending: turning journaled requests into outgoing items, and
//! journaled outcomes into item states and events.
//!
//! Everything here runs inside a processor step: deterministic, times from records, ids from
//! the minter. Routing hooks in through
//! [`super::automatic::request_automatic`] (acknowledgement and notification
//! mail asked for while applying a message); [`apply`] reports an agent's reply that left
//! ([`AgentReplied`]) so that the processor fires the `agent_emailed` trigger.

use crate::events::data::StatusTrigger;
use crate::message_id;
use chrono::{DateTime, Utc};

use super::{
    compose, policy, ItemStatus, OutgoingItem, Payload, Planner, Purpose, ReplyContext,
    RequestOutcome, Route,
};
use crate::conversations::Conversation;
use crate::events::data::{
    ChatConversation, EventData, OutboundChatMessage, OutboundItem, OutboundSuppressed, Via,
};
use crate::events::{EventDraft, OutboxWriter};
use crate::ids::Minter;
use crate::model::{OutboundOutcome, OutboundRecord, ReplyRequest, SendResult};
use crate::store::{keys, StateBatch, StoreError};

use super::automatic::request_automatic;

/// What the processor lends to outbound while applying one record.
pub struct Ctx<'a> {
    pub planner: &'a Planner,
    /// The routing directory's config half (users and teams a mailbox forwards to).
    pub rules: &'a crate::routing::RuleSet,
    pub outbox: &'a OutboxWriter,
    pub minter: &'a Minter,
}

/// An agent's reply left deskgate on this conversation: the provider accepted it, or (chat)
/// it was handed to the widget's backend. The processor fires `agent_emailed` for it in the
/// same step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReplied {
    pub conversation_id: String,
}

/// Applies one journaled outbound record. Returns the agent reply it saw leave, if any.
pub fn apply(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    record: &OutboundRecord,
) -> Result<Option<AgentReplied>, StoreError> {
    let (outcome, conversation_id) = match record {
        OutboundRecord::Reply(request) => {
            (reply(ctx, batch, seq, request)?, &request.conversation_id)
        }
        OutboundRecord::Automatic(request) => (
            request_automatic(ctx, batch, seq, request)?,
            &request.conversation_id,
        ),
        OutboundRecord::Outcome(outcome) => return apply_outcome(ctx, batch, outcome),
    };
    let handed_over = (outcome.status == "handed_over").then(|| AgentReplied {
        conversation_id: conversation_id.clone(),
    });
    batch.put(keys::outbound_request(seq), &outcome);
    // The request's text is the conversation's too: erasing its contact redacts it.
    if batch.contains(&keys::conversation(conversation_id))? {
        batch.put(keys::conversation_message(conversation_id, seq), &());
    }
    Ok(handed_over)
}

pub(super) fn refused(reason: String) -> RequestOutcome {
    RequestOutcome {
        status: "refused".to_owned(),
        item_id: None,
        message_id: None,
        reason: Some(reason),
    }
}

/// The conversation and what deskgate knows to answer on it.
pub(super) fn conversation_context(
    batch: &StateBatch<'_>,
    conversation_id: &str,
) -> Result<Option<(Conversation, ReplyContext)>, StoreError> {
    let Some(conversation) = batch.get::<Conversation>(&keys::conversation(conversation_id))?
    else {
        return Ok(None);
    };
    let mut context = batch
        .get::<ReplyContext>(&keys::reply_context(conversation_id))?
        .unwrap_or_else(|| ReplyContext {
            conversation_id: conversation.id.clone(),
            ticket_id: conversation.ticket_id.clone(),
            channel: conversation.channel.clone(),
            ..ReplyContext::default()
        });
    context.ticket_number = batch
        .get::<crate::model::Ticket>(&keys::ticket(&conversation.ticket_id))?
        .map(|ticket| ticket.number)
        .filter(|n| *n != 0);
    Ok(Some((conversation, context)))
}

/// The next Message-ID on a conversation sent from a mailbox.
pub(super) fn next_message_id(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    mailbox: &str,
    conversation_id: &str,
) -> Result<String, StoreError> {
    let n = batch.next(&keys::message_id_counter(conversation_id))?;
    let domain = ctx
        .planner
        .mailboxes
        .get(mailbox)
        .map(message_id::domain_of)
        .unwrap_or_default();
    Ok(message_id::outbound_message_id(conversation_id, n, &domain))
}

fn reply(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    request: &ReplyRequest,
) -> Result<RequestOutcome, StoreError> {
    let Some((conversation, context)) = conversation_context(batch, &request.conversation_id)?
    else {
        return Ok(refused(format!(
            "conversation_id: no conversation {:?}",
            request.conversation_id
        )));
    };
    let channel = conversation.channel.clone();
    let Some(route) = ctx.planner.route(&channel).cloned() else {
        return Ok(refused(format!(
            "channel {channel:?} has no outbound route (configure it under [outbound])"
        )));
    };
    let at = request.requested_at;
    let payload = match route {
        Route::Email { mailbox } => {
            let id = next_message_id(ctx, batch, &mailbox, &conversation.id)?;
            match compose::agent_reply(ctx.planner, &mailbox, &context, request, id) {
                Ok(mail) => Payload::Email(Box::new(mail)),
                Err(reason) => return Ok(refused(reason)),
            }
        }
        Route::Messenger | Route::Whatsapp => {
            match messaging_payload(ctx.planner, &route, &context, request) {
                Ok(payload) => payload,
                Err(reason) => return Ok(refused(reason)),
            }
        }
        Route::Chat => return hand_to_chat(ctx, batch, seq, &conversation, request),
    };
    let item = new_item(
        ctx,
        batch,
        seq,
        &conversation,
        Purpose::AgentReply,
        payload,
        at,
    )?;
    let item = OutgoingItem {
        agent_id: Some(request.agent.id.clone()),
        ..item
    };
    queue(batch, item)
}

/// A Messenger or WhatsApp reply, if the platform's window still allows one.
fn messaging_payload(
    planner: &Planner,
    route: &Route,
    context: &ReplyContext,
    request: &ReplyRequest,
) -> Result<Payload, String> {
    let at = request.requested_at;
    let channel = context.channel.clone();
    let user = context.channel_user.clone();
    let missing_user = || {
        format!(
            "conversation {} has no user id on {channel:?}",
            context.conversation_id
        )
    };
    if *route == Route::Whatsapp {
        policy::whatsapp_window(context.last_customer_at, at)?;
        let to = user.ok_or_else(missing_user)?;
        return Ok(Payload::Whatsapp {
            phone_number_id: route_config(&planner.whatsapp, &channel)?
                .phone_number_id
                .clone(),
            channel,
            to,
            text: request.text.clone(),
            to_user_id: context.channel_user_is_user_id,
        });
    }
    let window = policy::messenger_window(context.last_customer_at, at)?;
    let psid = user.ok_or_else(missing_user)?;
    let (messaging_type, tag) = match window {
        policy::MessengerWindow::Response => ("RESPONSE", None),
        policy::MessengerWindow::HumanAgent => ("MESSAGE_TAG", Some("HUMAN_AGENT".to_owned())),
    };
    Ok(Payload::Messenger {
        page_id: route_config(&planner.messenger, &channel)?.page_id.clone(),
        channel,
        psid,
        text: request.text.clone(),
        messaging_type: messaging_type.to_owned(),
        tag,
        quick_replies: Vec::new(),
    })
}

/// A channel's Graph settings; the route exists only when they do.
fn route_config<'a, T>(
    configs: &'a std::collections::BTreeMap<String, T>,
    channel: &str,
) -> Result<&'a T, String> {
    configs
        .get(channel)
        .ok_or_else(|| format!("channel {channel:?} has no Graph settings"))
}

/// Chat replies go to the widget's backend as an event: deskgate holds no visitor socket.
/// The reply is kept for the conversation's transcript, when its channel mails one.
fn hand_to_chat(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    conversation: &Conversation,
    request: &ReplyRequest,
) -> Result<RequestOutcome, StoreError> {
    super::transcript::agent_wrote(ctx, batch, seq, conversation, request)?;
    let message_id = ctx.minter.mint(batch, "chat_reply")?;
    let data = OutboundChatMessage {
        message_id: message_id.clone(),
        conversation: ChatConversation {
            id: conversation.id.clone(),
            thread_id: conversation.thread_key.clone(),
        },
        ticket_id: conversation.ticket_id.clone(),
        agent: request.agent.clone(),
        text: request.text.clone(),
        html: request.html.clone(),
        attachments: request.attachments.clone(),
    };
    let draft = EventDraft::new(
        &conversation.ticket_id,
        Some(&conversation.channel),
        EventData::OutboundChatMessage(data),
    );
    ctx.outbox.push(batch, request.requested_at, &draft)?;
    Ok(RequestOutcome {
        status: "handed_over".to_owned(),
        item_id: Some(message_id),
        message_id: None,
        reason: None,
    })
}

pub(super) fn new_item(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    conversation: &Conversation,
    purpose: Purpose,
    payload: Payload,
    at: DateTime<Utc>,
) -> Result<OutgoingItem, StoreError> {
    Ok(OutgoingItem {
        id: ctx.minter.mint(batch, "outgoing")?,
        journal_seq: seq,
        conversation_id: conversation.id.clone(),
        ticket_id: conversation.ticket_id.clone(),
        channel: conversation.channel.clone(),
        purpose,
        agent_id: None,
        payload,
        status: ItemStatus::Pending,
        attempts: 0,
        created_at: at,
        queue_seq: 0,
    })
}

/// An automatic text from a Messenger page (instant reply, consent text), as a RESPONSE to the
/// visitor's message (journal `seq`, received `at`).
pub(super) struct PageText<'a> {
    pub seq: u64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub conversation_id: &'a str,
    pub ticket_id: &'a str,
    pub channel: &'a str,
    pub page_id: &'a str,
    pub psid: &'a str,
    pub text: &'a str,
    pub purpose: Purpose,
    pub quick_replies: Vec<super::QuickReply>,
}

/// Queues a [`PageText`].
pub(super) fn queue_page_text(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    page: PageText<'_>,
) -> Result<(), StoreError> {
    let item = OutgoingItem {
        id: ctx.minter.mint(batch, "outgoing")?,
        journal_seq: page.seq,
        conversation_id: page.conversation_id.to_owned(),
        ticket_id: page.ticket_id.to_owned(),
        channel: page.channel.to_owned(),
        purpose: page.purpose,
        agent_id: None,
        payload: Payload::Messenger {
            channel: page.channel.to_owned(),
            page_id: page.page_id.to_owned(),
            psid: page.psid.to_owned(),
            text: page.text.to_owned(),
            messaging_type: "RESPONSE".to_owned(),
            tag: None,
            quick_replies: page.quick_replies,
        },
        status: ItemStatus::Pending,
        attempts: 0,
        created_at: page.at,
        queue_seq: 0,
    };
    queue(batch, item)?;
    Ok(())
}

/// Stores an item and puts it at the end of the sender's queue.
pub(super) fn queue(
    batch: &mut StateBatch<'_>,
    mut item: OutgoingItem,
) -> Result<RequestOutcome, StoreError> {
    item.queue_seq = batch.next(&keys::counter("outgoing_queue"))?;
    batch.put(keys::outgoing(&item.id), &item);
    batch.put(keys::outgoing_pending(item.queue_seq), &item.id);
    batch.put(
        keys::conversation_outgoing_item(&item.conversation_id, &item.id),
        &(),
    );
    let message_id = match &item.payload {
        Payload::Email(mail) => Some(mail.message_id.clone()),
        _ => None,
    };
    Ok(RequestOutcome {
        status: "queued".to_owned(),
        item_id: Some(item.id),
        message_id,
        reason: None,
    })
}

fn apply_outcome(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    outcome: &OutboundOutcome,
) -> Result<Option<AgentReplied>, StoreError> {
    let key = keys::outgoing(&outcome.item_id);
    let mut item: OutgoingItem = batch.get(&key)?.ok_or_else(|| StoreError::Corrupt {
        key: String::from_utf8_lossy(&key).into_owned(),
        reason: "an outcome names an outgoing item that does not exist".to_owned(),
    })?;
    let finished = matches!(
        item.status,
        ItemStatus::Sent { .. } | ItemStatus::Failed { .. } | ItemStatus::Suppressed { .. }
    );
    if finished {
        // A late outcome for an item already settled changes nothing and emits nothing.
        return Ok(None);
    }
    item.attempts = item.attempts.max(outcome.attempt);
    let (status, kind) = match &outcome.result {
        SendResult::Attempting => {
            item.status = ItemStatus::Sending;
            batch.put(key, &item);
            return Ok(None);
        }
        SendResult::Sent { provider_id } => (
            ItemStatus::Sent {
                provider_id: provider_id.clone(),
                at: outcome.at,
            },
            Settled::Sent,
        ),
        SendResult::Failed {
            error,
            recipient_unknown,
        } => {
            if *recipient_unknown {
                let reason = format!(
                    "the server refused it at {}: {error}",
                    outcome.at.to_rfc3339()
                );
                batch.put(keys::suppressed(&item.recipient().to_lowercase()), &reason);
            }
            (
                ItemStatus::Failed {
                    error: error.clone(),
                    at: outcome.at,
                },
                Settled::Failed,
            )
        }
        SendResult::Capped { reason } => (
            ItemStatus::Suppressed {
                reason: reason.clone(),
            },
            Settled::Suppressed,
        ),
    };
    item.status = status;
    let trigger = agent_emailed(batch, &item, outcome.at);
    batch.put(key, &item);
    batch.remove(keys::outgoing_pending(item.queue_seq));
    let data = event_data(&item, &outcome.result, trigger);
    let data = match kind {
        Settled::Sent => EventData::OutboundSent(data),
        Settled::Failed => EventData::OutboundFailed(data),
        Settled::Suppressed => EventData::OutboundSuppressed(OutboundSuppressed::Item(data)),
    };
    let draft = EventDraft::new(&item.ticket_id, Some(&item.channel), data);
    ctx.outbox.push(batch, outcome.at, &draft)?;
    Ok(trigger.map(|_| AgentReplied {
        conversation_id: item.conversation_id.clone(),
    }))
}

/// Records that an agent's reply went out on a ticket (by mail, Messenger or WhatsApp): the
/// `agent_emailed` status trigger, which the processor fires in the same step. Automatic mail
/// never counts.
fn agent_emailed(
    batch: &mut StateBatch<'_>,
    item: &OutgoingItem,
    at: DateTime<Utc>,
) -> Option<StatusTrigger> {
    let sent = matches!(item.status, ItemStatus::Sent { .. });
    if sent && item.purpose == Purpose::AgentReply {
        batch.put(keys::agent_emailed(&item.ticket_id), &at);
        Some(StatusTrigger::AgentEmailed)
    } else {
        None
    }
}

fn event_data(
    item: &OutgoingItem,
    result: &SendResult,
    trigger: Option<StatusTrigger>,
) -> OutboundItem {
    let (via, message_id) = match &item.payload {
        Payload::Email(mail) => (Via::Email, Some(mail.message_id.clone())),
        Payload::Messenger { .. } => (Via::Messenger, None),
        Payload::Whatsapp { .. } => (Via::Whatsapp, None),
    };
    let mut data = OutboundItem {
        item_id: item.id.clone(),
        conversation_id: item.conversation_id.clone(),
        ticket_id: item.ticket_id.clone(),
        via,
        purpose: item.purpose,
        agent_id: item.agent_id.clone(),
        recipient: item.recipient().to_owned(),
        message_id,
        attempts: item.attempts,
        requested_journal_seq: item.journal_seq,
        provider_id: None,
        error: None,
        reason: None,
        status_trigger: trigger,
    };
    match result {
        SendResult::Sent { provider_id } => data.provider_id = Some(provider_id.clone()),
        SendResult::Failed { error, .. } => data.error = Some(error.clone()),
        SendResult::Capped { reason } => data.reason = Some(reason.clone()),
        SendResult::Attempting => {}
    }
    data
}

/// Which event an item's settled outcome is.
enum Settled {
    Sent,
    Failed,
    Suppressed,
}
