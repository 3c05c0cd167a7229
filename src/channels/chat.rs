//! Website chat: the chat widget's backend posts each visitor message.
//!
//! ```json
//! { "visitor_token": "v-8f3a", "message_id": "m-1", "text": "Hello",
//!   "name": "Ana", "email": "ana@example.com", "phone": "+14155550100",
//!   "page_url": "https://example.com/pricing", "sent_at": "2026-11-23T10:00:00Z" }
//! ```
//!
//! One conversation per visitor and channel (the thread is the visitor token); the idempotency
//! key is the visitor token and message id. The visitor
//! token is a channel-scoped identity; an email or phone the visitor gives is added, so the
//! contacts logic can recognise (and merge) them. With a shared secret configured, every
//! request must be signed.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::meta::signature;
use super::{ChannelError, HookRequest};
use crate::config::ChannelConfig;
use crate::identity;
use crate::model::{Inbound, Sender};

const MAX_ID_BYTES: usize = 512;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatMessage {
    visitor_token: String,
    message_id: String,
    text: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    page_url: Option<String>,
    #[serde(default)]
    sent_at: Option<DateTime<Utc>>,
}

pub fn parse(config: &ChannelConfig, request: &HookRequest<'_>) -> Result<Inbound, ChannelError> {
    let secret = config
        .chat
        .as_ref()
        .map(|chat| chat.secret())
        .transpose()
        .map_err(ChannelError::Unavailable)?
        .flatten();
    if let Some(secret) = secret {
        signature::verify(
            request.headers,
            signature::DESKGATE_HEADER,
            &secret,
            &request.body,
        )?;
    }
    let message: ChatMessage = super::parse_json(&request.body)?;
    for (field, value) in [
        ("visitor_token", &message.visitor_token),
        ("message_id", &message.message_id),
    ] {
        if value.trim().is_empty() || value.len() > MAX_ID_BYTES {
            return Err(ChannelError::Invalid(format!(
                "{field}: must be 1 to {MAX_ID_BYTES} bytes"
            )));
        }
    }
    let mut identities = vec![identity::chat_visitor(
        request.channel_id,
        &message.visitor_token,
    )];
    if let Some(raw) = message.email.as_deref().filter(|s| !s.trim().is_empty()) {
        identities.push(identity::email(raw).ok_or_else(|| {
            ChannelError::Invalid(format!("email: {raw:?} is not an email address"))
        })?);
    }
    if let Some(raw) = message.phone.as_deref().filter(|s| !s.trim().is_empty()) {
        identities.push(identity::phone(raw, request.region).ok_or_else(|| {
            ChannelError::Invalid(format!("phone: {raw:?} is not a phone number"))
        })?);
    }
    let sender = Sender {
        name: message.name.filter(|n| !n.trim().is_empty()),
        identities,
        spellings: identity::spellings(message.email.as_deref()),
        ..Sender::default()
    };
    // Widgets number messages per visitor; scoped by the visitor, ids of different visitors
    // never collide.
    let external_id = format!("{}:{}", message.visitor_token, message.message_id);
    let mut inbound = Inbound::new(
        request.channel_id,
        external_id,
        message.visitor_token,
        sender,
        message.text,
        request.received_at,
    );
    inbound.sent_at = message.sent_at;
    if let Some(url) = message.page_url {
        inbound.extra.insert("page_url".into(), url.into());
    }
    Ok(inbound)
}
