//! `deskgate inspect mail FILE`: what the pipeline would make of a raw mail, as JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::mime::{self, email_of, MailError};
use crate::config::EmailConfig;
use crate::model::{Inbound, Sender};

/// The JSON view of a raw mail, or why it would be quarantined. Stores nothing.
pub fn view(raw: &[u8], options: &EmailConfig) -> Result<Value, MailError> {
    // The receive time is not part of the view; a fixed one keeps the output reproducible.
    let parsed = mime::parse("inspect", raw, DateTime::<Utc>::UNIX_EPOCH, options)?;
    Ok(render(&parsed.inbound))
}

fn render(inbound: &Inbound) -> Value {
    let email = inbound.email.clone().unwrap_or_default();
    let sender = |s: &Sender| json!({ "email": email_of(s), "name": s.name });
    json!({
        "from": sender(&inbound.sender),
        "reply_to": email.reply_to,
        "subject": inbound.subject,
        "message_id": email.message_id,
        "in_reply_to": email.in_reply_to,
        "references": email.references,
        "date": inbound.sent_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "auto_submitted": inbound.flags.automatic,
        "bounce": inbound.flags.bounce.as_ref().map(|b| json!({
            "recipient": b.recipient,
            "status": b.status,
            "message_id": b.message_id,
        })),
        "forwarded": inbound.flags.forwarded,
        "original_sender": inbound.flags.original_sender.as_ref().map(sender),
        "forwarded_by": inbound.extra.get("forwarded_by"),
        "reply_to_forward": inbound.extra.contains_key("reply_to_forward"),
        "attachments": inbound.attachments.iter().map(|a| json!({
            "name": a.name,
            "content_type": a.content_type,
            "size": a.size,
            "id": a.id,
        })).collect::<Vec<_>>(),
        "text": inbound.text,
        "html": inbound.html.is_some(),
    })
}
