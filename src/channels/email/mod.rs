//! Team email: raw RFC 5322 mail in (from an IMAP mailbox or pushed by an MTA), journal records
//! out.
//!
//! [`to_record`] is the one entry point every email source uses, so that IMAP, the HTTP push
//! and `deskgate inspect mail` see exactly the same result.

pub mod imap;
pub mod mime;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::model::{QuarantinedInput, Record};
use crate::store::Blobs;

/// Where a mail came from, for IMAP sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRef {
    pub folder: String,
    pub uid_validity: u32,
    pub uid: u32,
}

/// Turns raw mail into the record to journal: a message, or a quarantine entry (with the raw
/// bytes kept as a blob) when it cannot be read. Only storing a blob can fail.
pub fn to_record(
    channel_id: &str,
    raw: &[u8],
    received_at: DateTime<Utc>,
    blobs: &Blobs,
    mailbox: Option<&MailboxRef>,
) -> std::io::Result<Record> {
    match mime::parse(channel_id, raw, received_at) {
        Ok(mut inbound) => {
            if let (Some(email), Some(mailbox)) = (inbound.email.as_mut(), mailbox) {
                email.mailbox = Some(format!(
                    "{}/{}/{}",
                    mailbox.folder, mailbox.uid_validity, mailbox.uid
                ));
            }
            Ok(Record::Inbound(Box::new(inbound)))
        }
        Err(reason) => Ok(Record::Quarantine(QuarantinedInput {
            channel: channel_id.to_owned(),
            external_id: content_id(raw),
            reason: reason.to_string(),
            raw_blob: Some(blobs.put(raw)?),
            received_at,
        })),
    }
}

/// A stable id for mail without a usable Message-ID: a hash of its bytes.
pub fn content_id(raw: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(raw)))
}
