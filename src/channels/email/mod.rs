//! Team email: raw RFC 5322 mail in (from an IMAP mailbox or pushed by an MTA), journal records
//! out.
//!
//! [`to_record`] (or [`to_record_with`] for a channel's own options) is the one entry point
//! every email source uses, so that IMAP, the HTTP push and `deskgate inspect mail` see exactly
//! the same result.
//!
//! - [`mime`]: mail-parser reading, attachments, the sender.
//! - [`classify`]: automatic mail and bounces; [`forward`]: forwards and their original sender.
//! - [`loose`]: headers as clients read them (legacy charsets, loosely written senders).
//! - [`inspect`]: the JSON view `deskgate inspect mail` prints.

pub mod classify;
pub mod forward;
pub mod imap;
pub mod inspect;
pub mod loose;
pub mod mime;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::config::EmailConfig;
use crate::model::{QuarantinedInput, Record};
use crate::store::Blobs;

/// Where a mail came from, for IMAP sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRef {
    pub folder: String,
    pub uid_validity: u32,
    pub uid: u32,
}

/// Turns raw mail into the record to journal, with the default [`EmailConfig`]. See
/// [`to_record_with`].
pub fn to_record(
    channel_id: &str,
    raw: &[u8],
    received_at: DateTime<Utc>,
    blobs: &Blobs,
    mailbox: Option<&MailboxRef>,
) -> std::io::Result<Record> {
    to_record_with(
        channel_id,
        raw,
        received_at,
        blobs,
        mailbox,
        &EmailConfig::default(),
    )
}

/// Turns raw mail into the record to journal: a message (its attachment contents stored as
/// blobs first, so the record never names a missing blob), or a quarantine entry (with the raw
/// bytes kept as a blob) when it cannot be read. Only storing a blob can fail. Blocking: it
/// writes and fsyncs files.
pub fn to_record_with(
    channel_id: &str,
    raw: &[u8],
    received_at: DateTime<Utc>,
    blobs: &Blobs,
    mailbox: Option<&MailboxRef>,
    options: &EmailConfig,
) -> std::io::Result<Record> {
    match mime::parse(channel_id, raw, received_at, options) {
        Ok(parsed) => {
            let mut inbound = parsed.inbound;
            for (id, content) in &parsed.contents {
                let stored = blobs.put(content)?;
                debug_assert_eq!(&stored, id, "attachment ids are their blob ids");
            }
            for attachment in &inbound.attachments {
                let name = attachment.name.as_deref();
                blobs.describe(&attachment.id, &attachment.content_type, name)?;
            }
            if let (Some(email), Some(mailbox)) = (inbound.email.as_mut(), mailbox) {
                email.mailbox = Some(format!(
                    "{}/{}/{}",
                    mailbox.folder, mailbox.uid_validity, mailbox.uid
                ));
            }
            metrics::counter!("deskgate_email_parsed_total", "channel" => channel_id.to_owned(), "outcome" => "message").increment(1);
            Ok(Record::Inbound(Box::new(inbound)))
        }
        Err(reason) => {
            metrics::counter!("deskgate_email_parsed_total", "channel" => channel_id.to_owned(), "outcome" => "quarantined").increment(1);
            Ok(Record::Quarantine(QuarantinedInput {
                channel: channel_id.to_owned(),
                external_id: content_id(raw),
                reason: reason.to_string(),
                raw_blob: Some(blobs.put(raw)?),
                received_at,
            }))
        }
    }
}

/// A stable id for mail without a usable Message-ID: a hash of its bytes.
pub fn content_id(raw: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(raw)))
}

/// Reads mail pushed to `/hooks/{id}` (the whole body is one raw message).
pub async fn hook(
    config: &crate::config::ChannelConfig,
    request: &crate::channels::HookRequest<'_>,
) -> Result<Record, crate::channels::ChannelError> {
    use crate::channels::ChannelError;
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ChannelError::Invalid(
            "the body must be a raw RFC 5322 message; it is empty".to_owned(),
        ));
    }
    let channel = request.channel_id.to_owned();
    let raw = request.body.clone();
    let received_at = request.received_at;
    let blobs = request.blobs.clone();
    let options = config.email_options();
    let read = tokio::task::spawn_blocking(move || {
        to_record_with(&channel, &raw, received_at, &blobs, None, &options)
    })
    .await;
    match read {
        Ok(Ok(record)) => Ok(record),
        Ok(Err(error)) => {
            // The error names blob files: it goes to the log, the answer says what happened.
            tracing::error!(%error, "storing a mail's attachments failed");
            let full = error.kind() == std::io::ErrorKind::StorageFull;
            Err(ChannelError::Storage(
                if full {
                    "storing the mail's attachments failed: the state directory's disk is full"
                } else {
                    "storing the mail's attachments failed (the cause is in deskgate's log)"
                }
                .to_owned(),
            ))
        }
        Err(join) => Err(ChannelError::Storage(format!(
            "reading the mail failed: {join}"
        ))),
    }
}

#[cfg(test)]
mod tests;
