//! What the processor tells outbound about each customer message: who to answer and how
//! (addresses, threading headers, window times), bounces that suppress an address, and the
//! automatic sends a message starts (acknowledgement of a new ticket, forwards to a mailbox's
//! members, Messenger instant reply), and the chat messages kept for a transcript.

use super::apply::{self, Ctx};
use super::automatic;
use super::{policy, Purpose, ReplyContext, Route};
use crate::conversations::Threaded;
use crate::identity;
use crate::model::{AutomaticKind, AutomaticRequest, Identity, Inbound, MessageKind};
use crate::store::{keys, StateBatch, StoreError};

/// Called by the processor after a message is threaded, in the same step. A `quiet` message
/// (history: an import, a late catch-up; or a flagged spam sender's) teaches deskgate who to
/// answer but starts no automatic send.
pub fn inbound(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    (seq, quiet): (u64, bool),
    inbound: &Inbound,
    threaded: &Threaded,
) -> Result<(), StoreError> {
    if inbound.kind == MessageKind::Echo {
        // The business's own message echoed back: it says nothing about the customer.
        return Ok(());
    }
    let conversation = &threaded.conversation;
    let key = keys::reply_context(&conversation.id);
    let mut context = batch.get::<ReplyContext>(&key)?.unwrap_or_default();
    context.conversation_id = conversation.id.clone();
    context.ticket_id = conversation.ticket_id.clone();
    context.channel = conversation.channel.clone();
    update_context(&mut context, inbound);
    batch.put(key, &context);
    if let Some(address) = policy::hard_bounce(inbound) {
        let reason = format!(
            "hard bounce ({}) reported at {}",
            inbound
                .flags
                .bounce
                .as_ref()
                .and_then(|b| b.status.clone())
                .unwrap_or_else(|| "no status".into()),
            inbound.received_at.to_rfc3339()
        );
        batch.put(keys::suppressed(&address), &reason);
    }
    if quiet {
        return Ok(());
    }
    super::transcript::customer_wrote(ctx, batch, seq, inbound, conversation)?;
    match ctx.planner.route(&conversation.channel) {
        Some(Route::Email { mailbox }) if threaded.new_ticket => {
            let config = ctx.planner.mailboxes.get(mailbox);
            if let Some(config) = config.filter(|c| c.acknowledge_new_tickets) {
                let request = AutomaticRequest {
                    idempotency_key: format!("ack:{}", conversation.id),
                    kind: AutomaticKind::Acknowledgement,
                    template: config.acknowledgement_template.clone(),
                    conversation_id: conversation.id.clone(),
                    to: None,
                    fields: serde_json::Map::new(),
                    requested_at: inbound.received_at,
                };
                let (ticket, channel) = (&conversation.ticket_id, &conversation.channel);
                automatic::request_promised(ctx, batch, seq, &request, ticket, channel)?;
            }
        }
        Some(Route::Messenger) if context.customer_messages == 1 => {
            instant_reply(ctx, batch, seq, &context, threaded, inbound)?;
        }
        _ => {}
    }
    // After the acknowledgement, so that the customer's answer keeps the conversation's first
    // Message-ID.
    if let Some(Route::Email { mailbox }) = ctx.planner.route(&conversation.channel) {
        super::forward::inbound(ctx, batch, seq, inbound, (conversation, mailbox))?;
    }
    Ok(())
}

fn update_context(context: &mut ReplyContext, inbound: &Inbound) {
    if inbound.sender.name.is_some() {
        context.customer_name = inbound.sender.name.clone();
    }
    if inbound.sender.locale.is_some() {
        context.locale = inbound.sender.locale.clone();
    }
    let sender_email = inbound
        .sender
        .identities
        .iter()
        .find_map(|identity| match identity {
            Identity::Email { address } => Some(address.clone()),
            _ => None,
        });
    let reply_to = inbound.email.as_ref().and_then(|e| e.reply_to.clone());
    if let Some(address) = reply_to.or(sender_email) {
        context.customer_email = Some(address.trim().to_lowercase());
    }
    let on_channel = |identity: &&Identity| matches!(identity, Identity::Channel { channel, .. } if *channel == inbound.channel);
    let (user_ids, channel_ids): (Vec<&Identity>, Vec<&Identity>) = (inbound.sender.identities)
        .iter()
        .filter(on_channel)
        .partition(|identity| identity::whatsapp_user_id(identity).is_some());
    let channel_user = channel_ids
        .iter()
        .find_map(|identity| identity::platform_user_id(identity).map(str::to_owned));
    // WhatsApp: the phone when there is one (Meta's advice), else the business-scoped user id.
    let user_id = user_ids
        .first()
        .and_then(|identity| identity::whatsapp_user_id(identity).map(str::to_owned));
    let phone = inbound
        .sender
        .identities
        .iter()
        .find_map(|identity| match identity {
            Identity::Phone { number } => Some(number.trim_start_matches('+').to_owned()),
            _ => None,
        });
    if let Some(user) = channel_user.or(phone) {
        context.channel_user = Some(user);
        context.channel_user_is_user_id = false;
    } else if let Some(user) = user_id {
        context.channel_user = Some(user);
        context.channel_user_is_user_id = true;
    }
    // The platform's send time when it gives one (never later than we received it): Meta's
    // windows run from when the customer wrote.
    let wrote_at = inbound
        .sent_at
        .map_or(inbound.received_at, |sent| sent.min(inbound.received_at));
    context.last_customer_at = Some(
        context
            .last_customer_at
            .map_or(wrote_at, |t| t.max(wrote_at)),
    );
    context.customer_messages += 1;
    if let Some(email) = &inbound.email {
        context.last_message_id = Some(email.message_id.clone());
        context.references = email.references.clone();
    }
    if let Some(subject) = inbound.subject.as_ref().filter(|s| !s.trim().is_empty()) {
        context.subject = Some(subject.clone());
    }
    context.automatic = policy::automatic_inbound(inbound);
}

/// The optional text a Messenger page sends after a visitor's first message, in the visitor's
/// language when the page has it in that language.
fn instant_reply(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    context: &ReplyContext,
    threaded: &Threaded,
    inbound: &Inbound,
) -> Result<(), StoreError> {
    let Some(config) = ctx.planner.messenger.get(&context.channel) else {
        return Ok(());
    };
    let language = ctx.planner.language(context, None);
    let translation = config.instant_reply_translations.get(language.code());
    let text = translation.or(config.instant_reply.as_ref());
    let (Some(text), Some(psid)) = (text, &context.channel_user) else {
        return Ok(());
    };
    let page = apply::PageText {
        seq,
        at: inbound.received_at,
        conversation_id: &context.conversation_id,
        ticket_id: &threaded.ticket.id,
        channel: &context.channel,
        page_id: &config.page_id,
        psid,
        text,
        purpose: Purpose::InstantReply,
        quick_replies: Vec::new(),
    };
    apply::queue_page_text(ctx, batch, page)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::Sender;

    fn from(identities: Vec<Identity>) -> Inbound {
        let sender = Sender {
            identities,
            ..Sender::default()
        };
        Inbound::new("wa", "w1", "pn:x", sender, "hi", Utc::now())
    }

    /// A WhatsApp customer is answered at their phone when the conversation knows one (Meta's
    /// advice: `to` wins over `recipient`), at their business-scoped user id only without one.
    #[test]
    fn whatsapp_answers_the_phone_first_then_the_user_id() {
        let phone = identity::whatsapp_id("5511987654321").unwrap();
        let user = identity::whatsapp_user("wa", "waba", "BR.1502576394655843");
        let mut context = ReplyContext::default();
        let answered = |context: &ReplyContext| {
            (
                context.channel_user.clone().unwrap(),
                context.channel_user_is_user_id,
            )
        };

        update_context(&mut context, &from(vec![user.clone()]));
        assert_eq!(answered(&context), ("BR.1502576394655843".to_owned(), true));
        update_context(&mut context, &from(vec![phone.clone(), user.clone()]));
        assert_eq!(answered(&context), ("5511987654321".to_owned(), false));
        update_context(&mut context, &from(vec![user, phone]));
        assert_eq!(
            answered(&context),
            ("5511987654321".to_owned(), false),
            "whatever the order"
        );
    }
}
