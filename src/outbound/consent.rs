//! A Messenger page's GDPR consent text (`outbound.messenger.<channel>.consent`): sent once to a
//! visitor who has not consented to its current version, with an agree button (a quick reply
//! whose payload names the version) in explicit mode. The processor decides when
//! (`processor/consent.rs`); this queues the message in the same step.

use super::apply::{self, Ctx};
use super::QuickReply;
use crate::config::outbound::MessengerConfig;
use crate::identity;
use crate::model::{Inbound, Purpose};
use crate::store::{StateBatch, StoreError};

/// The quick-reply payload of the agree button: this prefix and the text's version.
const AGREE_PREFIX: &str = "DESKGATE_CONSENT_AGREE:";

/// The agree button's payload for `version`.
pub fn agree_payload(version: u32) -> String {
    format!("{AGREE_PREFIX}{version}")
}

/// The text version a tap on deskgate's agree button agrees to, when `inbound` is one.
pub fn agreed_version(inbound: &Inbound) -> Option<u32> {
    let payload = inbound.extra.get("quick_reply")?.as_str()?;
    payload.strip_prefix(AGREE_PREFIX)?.parse().ok()
}

/// Where the text goes: the conversation and ticket it belongs to. An explicit request
/// precedes both: it goes on [`request_conversation`] with no ticket.
pub struct Target<'a> {
    pub conversation_id: &'a str,
    pub ticket_id: &'a str,
}

/// The conversation id the consent requests to a contact are filed under before they have a
/// conversation (`consent:{contact}`: channel ids and minted ids hold no `:`), so that an
/// erasure of the contact blanks them like its conversations' messages.
pub fn request_conversation(contact_id: &str) -> String {
    format!("consent:{contact_id}")
}

/// Queues the consent text to the sender of `inbound` (journal `seq`), as a RESPONSE (it
/// answers the visitor's message), with the agree button when `explicit`.
pub fn queue(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    (seq, inbound): (u64, &Inbound),
    target: Target<'_>,
    explicit: bool,
) -> Result<(), StoreError> {
    let Some(page) = ctx.planner.messenger.get(&inbound.channel) else {
        return Ok(());
    };
    let (Some(text), Some(psid)) = (&page.consent_text, psid(inbound)) else {
        return Ok(());
    };
    let quick_replies = if explicit {
        agree_button(page)
    } else {
        Vec::new()
    };
    let text = apply::PageText {
        seq,
        at: inbound.received_at,
        conversation_id: target.conversation_id,
        ticket_id: target.ticket_id,
        channel: &inbound.channel,
        page_id: &page.page_id,
        psid,
        text,
        purpose: Purpose::Consent,
        quick_replies,
    };
    apply::queue_page_text(ctx, batch, text)
}

fn agree_button(page: &MessengerConfig) -> Vec<QuickReply> {
    vec![QuickReply {
        title: page.consent_agree_label.clone(),
        payload: agree_payload(page.consent_version),
    }]
}

/// The visitor's PSID on the message's channel.
fn psid(inbound: &Inbound) -> Option<&str> {
    inbound
        .sender
        .identities
        .iter()
        .find_map(|identity| match identity {
            crate::model::Identity::Channel { channel, .. } if *channel == inbound.channel => {
                identity::platform_user_id(identity)
            }
            _ => None,
        })
}
