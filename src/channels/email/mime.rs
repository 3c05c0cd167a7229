//! Parsing one raw mail into an [`Inbound`] with mail-parser.

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, MessageParser};

use crate::channels::identity;
use crate::model::{EmailMeta, Inbound, Sender};

/// Why a mail cannot become a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    #[error("not a parseable RFC 5322 message")]
    Unparseable,
    #[error("the mail parser panicked on this message")]
    ParserPanicked,
    #[error("no usable sender address (From)")]
    NoSender,
}

/// Parses raw mail. Never panics: mail-parser has panicked on crafted input in the past, so
/// the parse runs under `catch_unwind`.
pub fn parse(
    channel_id: &str,
    raw: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Inbound, MailError> {
    catch_unwind(AssertUnwindSafe(|| {
        parse_unguarded(channel_id, raw, received_at)
    }))
    .unwrap_or(Err(MailError::ParserPanicked))
}

fn parse_unguarded(
    channel_id: &str,
    raw: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Inbound, MailError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MailError::Unparseable)?;
    let from = message
        .from()
        .and_then(Address::first)
        .ok_or(MailError::NoSender)?;
    let address = from
        .address()
        .and_then(identity::email)
        .ok_or(MailError::NoSender)?;
    let sender = Sender {
        name: from
            .name()
            .map(str::to_owned)
            .filter(|n| !n.trim().is_empty()),
        identities: vec![address],
    };
    let message_id = message
        .message_id()
        .map(str::to_owned)
        .unwrap_or_else(|| super::content_id(raw));
    let ids = |value: &HeaderValue<'_>| -> Vec<String> {
        value
            .as_text_list()
            .map(|ids| ids.iter().map(|id| id.to_string()).collect())
            .unwrap_or_default()
    };
    let email = EmailMeta {
        in_reply_to: ids(message.in_reply_to()),
        references: ids(message.references()),
        reply_to: message
            .reply_to()
            .and_then(Address::first)
            .and_then(|a| a.address())
            .map(str::to_owned),
        message_id: message_id.clone(),
        mailbox: None,
    };
    let text = message
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    let mut inbound = Inbound::new(
        channel_id,
        message_id.clone(),
        message_id,
        sender,
        text,
        received_at,
    );
    inbound.subject = message.subject().map(str::to_owned);
    inbound.html = message.body_html(0).map(|h| h.into_owned());
    inbound.sent_at = message
        .date()
        .and_then(|d| DateTime::parse_from_rfc3339(&d.to_rfc3339()).ok())
        .map(|d| d.with_timezone(&Utc));
    inbound.email = Some(email);
    inbound.flags.automatic = automatic(&message);
    Ok(inbound)
}

/// Whether the mail says a machine sent it (RFC 3834 `Auto-Submitted`, the common auto-reply
/// headers, bulk `Precedence`, a null return path). A first reading for the outbound policy;
/// the email parsing work owns the full classification.
fn automatic(message: &mail_parser::Message<'_>) -> bool {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| v != "no");
    let auto_reply = header("X-Autoreply").is_some() || header("X-Autorespond").is_some();
    let bulk = header("Precedence")
        .is_some_and(|v| matches!(v.as_str(), "bulk" | "junk" | "list" | "auto_reply"));
    let null_path = header("Return-Path").is_some_and(|v| v == "<>");
    auto_submitted || auto_reply || bulk || null_path
}
