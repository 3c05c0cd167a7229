//! Automatic mail (acknowledgements, notifications, forwards) asked for inside a processor
//! step: the recipient checked against the automatic-mail policy, the template rendered, the
//! item queued, or the refusal announced as `deskgate.outbound.suppressed`.

use super::apply::{conversation_context, new_item, next_message_id, queue, refused, Ctx};
use super::{compose, policy, Payload, Purpose, ReplyContext, RequestOutcome, Route};
use crate::conversations::Conversation;
use crate::events::data::{AutomaticSuppressed, EventData, OutboundSuppressed};
use crate::events::EventDraft;
use crate::model::{Attachment, AutomaticKind, AutomaticRequest};
use crate::store::{keys, StateBatch, StoreError};

/// Asks for an automatic mail on a conversation: checks the recipient may get one, renders the
/// template, and queues it. The hook routing calls (inside its processor step) for
/// acknowledgement and notification actions; `seq` is the journal record being applied.
pub fn request_automatic(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    request: &AutomaticRequest,
) -> Result<RequestOutcome, StoreError> {
    let purpose = match request.kind {
        AutomaticKind::Acknowledgement => Purpose::Acknowledgement,
        AutomaticKind::Notification => Purpose::Notification,
    };
    request_mail(ctx, batch, seq, (request, purpose), &[])
}

/// [`request_automatic`] for a given purpose, with attachments (blob ids) to carry.
pub(super) fn request_mail(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    (request, purpose): (&AutomaticRequest, Purpose),
    attachments: &[Attachment],
) -> Result<RequestOutcome, StoreError> {
    let Some((conversation, context)) = conversation_context(batch, &request.conversation_id)?
    else {
        return Ok(refused(format!(
            "conversation_id: no conversation {:?}",
            request.conversation_id
        )));
    };
    let Some(Route::Email { mailbox }) = ctx.planner.route(&conversation.channel).cloned() else {
        return Ok(refused(format!(
            "channel {:?} is not answered by any mailbox (no [outbound.mailboxes.*] lists it \
             in `channels`), so no automatic mail can be sent on it",
            conversation.channel
        )));
    };
    let Some(to) = request
        .to
        .clone()
        .or_else(|| context.customer_email.clone())
    else {
        return Ok(refused(
            "no recipient: the conversation has no customer email address".to_owned(),
        ));
    };
    let to = to.trim().to_lowercase();
    if let Some(reason) = blocked(batch, request.kind, &context, &to)? {
        return suppress(ctx, batch, &conversation, request, &to, reason);
    }
    let id = next_message_id(ctx, batch, &mailbox, &conversation.id)?;
    let asked = (request, purpose);
    let mut mail = match compose::automatic(ctx.planner, &mailbox, &context, asked, to, id) {
        Ok(mail) => mail,
        Err(reason) => return Ok(refused(reason)),
    };
    mail.attachments = attachments.to_vec();
    let payload = Payload::Email(Box::new(mail));
    let item = new_item(
        ctx,
        batch,
        seq,
        &conversation,
        purpose,
        payload,
        request.requested_at,
    )?;
    queue(batch, item)
}

/// Like [`request_automatic`] for mail deskgate promised by itself (a status-reached action, a
/// mailbox's acknowledgement of new tickets): a request that cannot even be queued is announced
/// as `deskgate.outbound.suppressed` with its reason, so that every promise ends in an outcome
/// event (queued mail ends in `sent`, `failed` or `suppressed` when the sender settles it).
pub fn request_promised(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    request: &AutomaticRequest,
    ticket_id: &str,
    channel: &str,
) -> Result<RequestOutcome, StoreError> {
    let outcome = request_automatic(ctx, batch, seq, request)?;
    announce_refused(ctx, batch, seq, request, (ticket_id, channel), outcome)
}

/// Announces a promised request that could not even be queued (see [`request_promised`]).
pub(super) fn announce_refused(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    request: &AutomaticRequest,
    (ticket_id, channel): (&str, &str),
    outcome: RequestOutcome,
) -> Result<RequestOutcome, StoreError> {
    if outcome.status != "refused" {
        return Ok(outcome);
    }
    let reason = outcome.reason.clone().unwrap_or_default();
    tracing::info!(
        ticket = ticket_id,
        template = %request.template,
        reason,
        "automatic mail not sent"
    );
    let data = AutomaticSuppressed {
        conversation_id: request.conversation_id.clone(),
        ticket_id: ticket_id.to_owned(),
        kind: request.kind,
        template: request.template.clone(),
        recipient: request.to.clone(),
        reason,
        requested_journal_seq: Some(seq),
    };
    let data = EventData::OutboundSuppressed(OutboundSuppressed::Automatic(data));
    let draft = EventDraft::new(ticket_id, Some(channel), data);
    ctx.outbox.push(batch, request.requested_at, &draft)?;
    Ok(outcome)
}

/// Why this recipient must not get this automatic mail, if it must not.
pub(super) fn blocked(
    batch: &StateBatch<'_>,
    kind: AutomaticKind,
    context: &ReplyContext,
    to: &str,
) -> Result<Option<String>, StoreError> {
    if let Some(reason) = batch.get::<String>(&keys::suppressed(to))? {
        return Ok(Some(format!(
            "{to} is suppressed for automatic mail: {reason}"
        )));
    }
    if let Some(reason) = policy::machine_address(to) {
        return Ok(Some(reason));
    }
    let to_customer = context.customer_email.as_deref() == Some(to);
    if kind == AutomaticKind::Acknowledgement && to_customer {
        if let Some(reason) = &context.automatic {
            return Ok(Some(reason.clone()));
        }
    }
    Ok(None)
}

/// Announces an automatic mail not sent to `to`, and why, as `deskgate.outbound.suppressed`.
pub(super) fn suppress(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    conversation: &Conversation,
    request: &AutomaticRequest,
    to: &str,
    reason: String,
) -> Result<RequestOutcome, StoreError> {
    let data = AutomaticSuppressed {
        conversation_id: conversation.id.clone(),
        ticket_id: conversation.ticket_id.clone(),
        kind: request.kind,
        template: request.template.clone(),
        recipient: Some(to.to_owned()),
        reason: reason.clone(),
        requested_journal_seq: None,
    };
    let data = EventData::OutboundSuppressed(OutboundSuppressed::Automatic(data));
    let draft = EventDraft::new(&conversation.ticket_id, Some(&conversation.channel), data);
    ctx.outbox.push(batch, request.requested_at, &draft)?;
    Ok(RequestOutcome {
        status: "suppressed".to_owned(),
        item_id: None,
        message_id: None,
        reason: Some(reason),
    })
}
