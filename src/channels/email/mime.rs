//! Parsing one raw mail into an [`Inbound`] with mail-parser: sender, subject, bodies,
//! attachments, threading headers and the classification flags.

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use super::{classify, forward};
use crate::channels::identity;
use crate::config::EmailConfig;
use crate::model::{Attachment, EmailMeta, Identity, Inbound, Sender};

/// Why a mail cannot become a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    #[error("not a parseable RFC 5322 message")]
    Unparseable,
    #[error("the mail parser panicked on this message")]
    ParserPanicked,
    #[error("no usable sender address (From, Sender, Reply-To or Return-Path)")]
    NoSender,
    #[error("the message is {size} bytes, over this channel's limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
}

/// A parsed mail: the message, and the attachment contents its `attachments` name by blob id,
/// still to be stored.
#[derive(Debug)]
pub struct ParsedMail {
    pub inbound: Inbound,
    pub contents: Vec<(String, Vec<u8>)>,
}

/// Parses raw mail. Never panics: mail-parser has panicked on crafted input in the past, so
/// the parse runs under `catch_unwind`.
pub fn parse(
    channel_id: &str,
    raw: &[u8],
    received_at: DateTime<Utc>,
    options: &EmailConfig,
) -> Result<ParsedMail, MailError> {
    let size = raw.len() as u64;
    if size > options.max_message_bytes {
        return Err(MailError::TooLarge {
            size,
            limit: options.max_message_bytes,
        });
    }
    catch_unwind(AssertUnwindSafe(|| {
        parse_unguarded(channel_id, raw, received_at, options)
    }))
    .unwrap_or(Err(MailError::ParserPanicked))
}

fn parse_unguarded(
    channel_id: &str,
    raw: &[u8],
    received_at: DateTime<Utc>,
    options: &EmailConfig,
) -> Result<ParsedMail, MailError> {
    let normalised = cr_only_to_lf(raw);
    let raw = normalised.as_deref().unwrap_or(raw);
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MailError::Unparseable)?;
    let found = sender_of(&message);
    // Machine mail (bounces from a null sender) may come without any address; it is still
    // recorded, with an anonymous sender. A person's mail without one cannot be answered.
    let from = found.clone().unwrap_or_else(|| Sender {
        name: message
            .from()
            .and_then(Address::first)
            .and_then(|a| a.name())
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        ..Sender::default()
    });
    let message_id = message
        .message_id()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| super::content_id(raw));
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
        from.clone(),
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
    let (attachments, contents) = attachments(&message);
    inbound.attachments = attachments;
    inbound.flags.automatic = classify::is_automatic(&message, &from);
    inbound.flags.bounce = classify::bounce(&message, &from);
    if found.is_none() {
        if !inbound.flags.automatic && inbound.flags.bounce.is_none() {
            return Err(MailError::NoSender);
        }
        // An address that is no identity is still what the mail said: keep it as text.
        if let Some(text) = message
            .header_raw("From")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            inbound
                .extra
                .insert("from_text".to_owned(), serde_json::Value::from(text));
        }
    }
    if inbound.flags.bounce.is_some() {
        // A delivery report is machine-made whatever its headers claim.
        inbound.flags.automatic = true;
    } else if let Some(forwarded) = forward::detect(&message, &inbound.text) {
        apply_forward(&mut inbound, forwarded, options);
    } else if inbound
        .subject
        .as_deref()
        .is_some_and(forward::is_reply_to_forward)
    {
        // Not a forward itself, but its thread began as one: not the customer's own reply.
        inbound
            .extra
            .insert("reply_to_forward".to_owned(), serde_json::Value::Bool(true));
    }
    Ok(ParsedMail { inbound, contents })
}

/// Mail saved by classic Mac tools ends lines with a bare CR, which mail-parser reads as one
/// endless header line. Such mail (CRs but no LF at all in its head) gets LF line ends.
fn cr_only_to_lf(raw: &[u8]) -> Option<Vec<u8>> {
    let head = &raw[..raw.len().min(64 * 1024)];
    if head.contains(&b'\n') || !head.contains(&b'\r') {
        return None;
    }
    Some(
        raw.iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect(),
    )
}

/// Marks a forward and, when the channel asks for it, makes the original author the sender.
fn apply_forward(inbound: &mut Inbound, forwarded: forward::Forwarded, options: &EmailConfig) {
    inbound.flags.forwarded = true;
    inbound.flags.original_sender = forwarded.original_sender.clone();
    let Some(original) = forwarded.original_sender else {
        return;
    };
    // Forwarding your own mail is not a forward of someone else's; and a forwarded bounce or
    // notification is the forwarder's concern, not the machine's.
    if original.identities == inbound.sender.identities || classify::is_unanswerable(&original) {
        return;
    }
    if options.original_sender_of_forwards {
        let forwarder = std::mem::replace(&mut inbound.sender, original);
        inbound.extra.insert(
            "forwarded_by".to_owned(),
            serde_json::to_value(forwarder).unwrap_or_default(),
        );
    }
}

/// The sender: From, else Sender, Reply-To, Return-Path (bounces and some list mail lack a
/// From).
fn sender_of(message: &Message<'_>) -> Option<Sender> {
    let candidates = [message.from(), message.sender(), message.reply_to()];
    for address in candidates.into_iter().flatten() {
        let Some(first) = address.first() else {
            continue;
        };
        if let Some(identity) = first.address().and_then(identity::email) {
            return Some(Sender {
                name: first
                    .name()
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty()),
                identities: vec![identity],
                spellings: identity::spellings(first.address()),
            });
        }
    }
    let return_path = message.return_address()?.trim_matches(['<', '>', ' ']);
    Some(Sender {
        name: None,
        identities: vec![identity::email(return_path)?],
        spellings: identity::spellings([return_path]),
    })
}

/// The plain address of a sender's first email identity.
pub fn email_of(sender: &Sender) -> Option<&str> {
    sender
        .identities
        .iter()
        .find_map(|identity| match identity {
            Identity::Email { address } => Some(address.as_str()),
            _ => None,
        })
}

/// Message ids from In-Reply-To or References, without angle brackets.
pub fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let list = match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .map(|id| id.trim().trim_matches(['<', '>']).to_owned())
        .filter(|id| !id.is_empty())
        .collect()
}

/// Every attachment's metadata, with its id (the SHA-256 of its content, which is also its blob
/// id) and the content to store.
fn attachments(message: &Message<'_>) -> (Vec<Attachment>, Vec<(String, Vec<u8>)>) {
    let mut list = Vec::new();
    let mut contents: Vec<(String, Vec<u8>)> = Vec::new();
    for part in message.attachments() {
        let content = part.contents();
        let id = hex::encode(Sha256::digest(content));
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .unwrap_or_else(|| "application/octet-stream".to_owned())
            .to_ascii_lowercase();
        list.push(Attachment {
            id: id.clone(),
            name: part.attachment_name().map(str::to_owned),
            content_type,
            size: content.len() as u64,
        });
        if !contents.iter().any(|(known, _)| *known == id) {
            contents.push((id, content.to_vec()));
        }
    }
    (list, contents)
}
