//! Parsing one raw mail into an [`Inbound`] with mail-parser: sender, subject, bodies,
//! attachments, threading headers and the classification flags.

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use super::{classify, forward, loose};
use crate::config::EmailConfig;
use crate::identity;
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
    let raw = skip_blank_lines(normalised.as_deref().unwrap_or(raw));
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MailError::Unparseable)?;
    let declared = declared_charset(&message);
    let sample = &raw[message.root_part().raw_body_offset() as usize..];
    let (found, repaired) = sender_of(&message, raw, declared.as_deref(), sample);
    let from_text = loose::raw_header(raw, "From")
        .map(|v| String::from_utf8_lossy(&v).trim().to_owned())
        .filter(|t| !t.is_empty());
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
    let email = email_meta(&message, message_id.clone());
    // One line-ending convention whatever the transfer encoding kept: LF.
    let text = message.body_text(0).map(|t| lf(&t)).unwrap_or_default();
    let mut inbound = Inbound::new(
        channel_id,
        message_id.clone(),
        message_id,
        from.clone(),
        text,
        received_at,
    );
    inbound.subject = subject_of(&message, raw, declared.as_deref(), sample);
    // mail-parser offers a text part as HTML when there is no HTML part: keep only real HTML.
    let has_html = message
        .html_bodies()
        .next()
        .is_some_and(|part| matches!(part.body, mail_parser::PartType::Html(_)));
    inbound.html = message.body_html(0).filter(|_| has_html).map(|h| lf(&h));
    inbound.sent_at = message
        .date()
        .and_then(|d| DateTime::parse_from_rfc3339(&d.to_rfc3339()).ok())
        .map(|d| d.with_timezone(&Utc));
    inbound.email = Some(email);
    let (attachments, contents) = attachments(&message);
    inbound.attachments = attachments;
    classify_sender(
        &mut inbound,
        &message,
        (&from, found.is_some()),
        (from_text, repaired),
    )?;
    mark_forwards(&mut inbound, &message, options);
    Ok(ParsedMail { inbound, contents })
}

/// The headers that place the mail in a thread, and its recipients.
fn email_meta(message: &Message<'_>, message_id: String) -> EmailMeta {
    EmailMeta {
        in_reply_to: ids(message.in_reply_to()),
        references: ids(message.references()),
        reply_to: message
            .reply_to()
            .and_then(Address::first)
            .and_then(|a| a.address())
            .map(str::to_owned),
        message_id,
        mailbox: None,
        to: addresses(message.to()),
        cc: addresses(message.cc()),
    }
}

/// The subject as the mail wrote it: a legacy charset read as the body declares it, else
/// mail-parser's decoding (repaired where it guessed wrong).
fn subject_of(
    message: &Message<'_>,
    raw: &[u8],
    declared: Option<&str>,
    sample: &[u8],
) -> Option<String> {
    let raw_subject = loose::raw_header(raw, "Subject");
    raw_subject
        .as_deref()
        .and_then(|value| loose::legacy_text(value, declared, sample))
        .map(|subject| subject.trim().to_owned())
        .or_else(|| {
            let subject = message.subject()?;
            Some(loose::redecode(subject, raw_subject.as_deref()).unwrap_or(subject.to_owned()))
        })
}

/// Flags machine mail and bounces, and keeps what the From header said when no identity came
/// of it or it had to be repaired. A person's mail without a sender is refused.
fn classify_sender(
    inbound: &mut Inbound,
    message: &Message<'_>,
    (from, found): (&Sender, bool),
    (from_text, repaired): (Option<String>, bool),
) -> Result<(), MailError> {
    inbound.flags.automatic = classify::is_automatic(message, from)
        || !found
            && from_text
                .as_deref()
                .is_some_and(loose::is_bare_machine_sender);
    if repaired {
        // The address was read the way a person reads it, not as RFC 5322 writes it.
        inbound
            .extra
            .insert("sender_repaired".to_owned(), serde_json::Value::Bool(true));
        if let Some(text) = &from_text {
            inbound.extra.insert(
                "from_text".to_owned(),
                serde_json::Value::from(text.clone()),
            );
        }
    }
    inbound.flags.bounce = classify::bounce(message, from);
    if !found {
        if !inbound.flags.automatic && inbound.flags.bounce.is_none() {
            return Err(MailError::NoSender);
        }
        // An address that is no identity is still what the mail said: keep it as text.
        if let Some(text) = &from_text {
            inbound.extra.insert(
                "from_text".to_owned(),
                serde_json::Value::from(text.clone()),
            );
        }
    }
    Ok(())
}

/// A bounce is machine mail; a forward takes its original sender (as `options` allow); a reply
/// in a thread that began as a forward is marked as such.
fn mark_forwards(inbound: &mut Inbound, message: &Message<'_>, options: &EmailConfig) {
    if inbound.flags.bounce.is_some() {
        // A delivery report is machine-made whatever its headers claim.
        inbound.flags.automatic = true;
    } else if let Some(forwarded) = forward::detect(message, &inbound.text) {
        apply_forward(inbound, forwarded, options);
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

/// The sender, and whether it had to be read loosely: the first usable address of From (its
/// display name decoded from a legacy charset when it was written in one), else From read as a
/// person reads it ([`loose::loose_address`]), else Sender, Reply-To, Return-Path (bounces and
/// some list mail lack a From).
fn sender_of(
    message: &Message<'_>,
    raw: &[u8],
    declared: Option<&str>,
    sample: &[u8],
) -> (Option<Sender>, bool) {
    let sender = |name: Option<String>, identity: Identity, written: &str| Sender {
        name: name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()),
        identities: vec![identity],
        spellings: identity::spellings([written]),
        ..Sender::default()
    };
    let from_raw = loose::raw_header(raw, "From");
    if let Some(text) = from_raw
        .as_deref()
        .and_then(|v| loose::legacy_text(v, declared, sample))
    {
        if let Some((name, identity)) = loose::loose_address(&text) {
            return (Some(sender(name, identity, "")), false);
        }
    }
    let listed = |address: Option<&Address<'_>>| {
        address.into_iter().flat_map(|a| a.iter()).find_map(|addr| {
            let written = addr.address()?;
            let identity = identity::email(written)?;
            // An encoded-word name in ISO-2022-JP that mail-parser left with its escapes.
            let name = addr
                .name()
                .map(|n| loose::redecode(n, None).unwrap_or_else(|| n.to_owned()));
            Some(sender(name, identity, written))
        })
    };
    // The first From header, as clients show it (mail-parser keeps the last of several).
    let first_from = from_raw.as_deref().and_then(|value| {
        let header = [b"From: ", value, b"\r\n\r\n"].concat();
        MessageParser::default()
            .parse(&header[..])?
            .from()?
            .clone()
            .into_owned()
            .into()
    });
    if let Some(found) = listed(first_from.as_ref()).or_else(|| listed(message.from())) {
        return (Some(found), false);
    }
    if let Some((name, identity)) = from_raw
        .as_deref()
        .and_then(|v| loose::loose_address(&String::from_utf8_lossy(v)))
    {
        return (Some(sender(name, identity, "")), true);
    }
    for other in [message.sender(), message.reply_to()] {
        if let Some(found) = listed(other) {
            return (Some(found), false);
        }
    }
    let found = message
        .return_address()
        .map(|r| r.trim_matches(['<', '>', ' ']))
        .and_then(|r| Some(sender(None, identity::email(r)?, r)));
    (found, false)
}

/// The charset the message declares: its own Content-Type's, else its first text part's.
fn declared_charset(message: &Message<'_>) -> Option<String> {
    let charset_of = |part: &mail_parser::MessagePart<'_>| {
        part.content_type()
            .and_then(|ct| ct.attribute("charset"))
            .map(str::to_owned)
    };
    charset_of(message.root_part()).or_else(|| message.text_bodies().find_map(charset_of))
}

/// Some stored mail starts with blank or whitespace-only lines (flanker's fixtures, mail saved
/// by hand); clients read the headers after them, and so does deskgate.
fn skip_blank_lines(raw: &[u8]) -> &[u8] {
    let mut rest = raw;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        if !line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) || end + 1 >= rest.len() {
            break;
        }
        rest = &rest[end + 1..];
    }
    rest
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

/// Text with CRLF (and lone CR) line ends turned into LF.
fn lf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The addresses of an address header (To, Cc), lower-cased, each once.
fn addresses(value: Option<&Address<'_>>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for addr in value.into_iter().flat_map(|a| a.iter()) {
        let Some(address) = addr.address().map(|a| a.trim().to_lowercase()) else {
            continue;
        };
        if address.contains('@') && !found.contains(&address) {
            found.push(address);
        }
    }
    found
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
