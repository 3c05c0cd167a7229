//! The generic API channel, for integrations and imports: one JSON message per request.
//!
//! ```json
//! { "external_id": "crm-123", "thread_id": "case-9",
//!   "from": { "email": "ana@example.com", "phone": "+14155550100", "name": "Ana", "external_id": "cust-1" },
//!   "subject": "Printer on fire", "text": "Help", "sent_at": "2026-11-23T10:00:00Z" }
//! ```

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{ChannelError, HookRequest};
use crate::identity;
use crate::model::{Identity, Inbound, Sender};

/// The longest external id or thread id accepted, in bytes.
const MAX_ID_BYTES: usize = 512;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiMessage {
    external_id: String,
    thread_id: String,
    from: ApiSender,
    #[serde(default)]
    subject: Option<String>,
    text: String,
    #[serde(default)]
    sent_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSender {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
}

pub fn parse(request: &HookRequest<'_>) -> Result<Inbound, ChannelError> {
    let message: ApiMessage = super::parse_json(&request.body)?;

    check_id("external_id", &message.external_id)?;
    check_id("thread_id", &message.thread_id)?;
    let sender = sender(request, message.from)?;
    let mut inbound = Inbound::new(
        request.channel_id,
        message.external_id,
        message.thread_id,
        sender,
        message.text,
        request.received_at,
    );
    inbound.subject = message.subject.filter(|s| !s.trim().is_empty());
    inbound.sent_at = message.sent_at;
    Ok(inbound)
}

fn check_id(field: &str, value: &str) -> Result<(), ChannelError> {
    if value.trim().is_empty() {
        return Err(ChannelError::Invalid(format!("{field}: must not be empty")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(ChannelError::Invalid(format!(
            "{field}: must be at most {MAX_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

fn sender(request: &HookRequest<'_>, from: ApiSender) -> Result<Sender, ChannelError> {
    let channel_id = request.channel_id;
    let mut identities = Vec::new();
    if let Some(id) = &from.external_id {
        check_id("from.external_id", id)?;
        identities.push(Identity::Channel {
            channel: channel_id.to_owned(),
            id: id.clone(),
        });
    }
    if let Some(raw) = &from.email {
        identities.push(identity::email(raw).ok_or_else(|| {
            ChannelError::Invalid(format!("from.email: {raw:?} is not an email address"))
        })?);
    }
    if let Some(raw) = &from.phone {
        identities.push(identity::phone(raw, request.region).ok_or_else(|| {
            ChannelError::Invalid(format!("from.phone: {raw:?} is not a phone number"))
        })?);
    }
    if identities.is_empty() {
        return Err(ChannelError::Invalid(
            "from: needs at least one of email, phone or external_id".to_owned(),
        ));
    }
    Ok(Sender {
        name: from.name.filter(|n| !n.trim().is_empty()),
        identities,
        spellings: identity::spellings(from.email.as_deref()),
        ..Sender::default()
    })
}

#[cfg(test)]
mod tests;
