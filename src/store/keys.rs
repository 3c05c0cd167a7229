//! Key layouts. Numbers are big-endian so that byte order is numeric order.

use crate::model::DedupeKey;

pub const JOURNAL: &[u8] = b"j";
const DEDUPE: &[u8] = b"d";
const OUTBOX: &[u8] = b"outbox/";

pub fn journal(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = JOURNAL[0];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub fn journal_seq(key: &[u8]) -> u64 {
    be_u64(&key[JOURNAL.len()..])
}

/// Channel ids cannot contain NUL (config validation), so the separator is unambiguous.
pub fn dedupe(key: &DedupeKey) -> Vec<u8> {
    let mut bytes =
        Vec::with_capacity(DEDUPE.len() + key.channel.len() + 1 + key.external_id.len());
    bytes.extend_from_slice(DEDUPE);
    bytes.extend_from_slice(key.channel.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(key.external_id.as_bytes());
    bytes
}

pub fn outbox(seq: u64) -> Vec<u8> {
    let mut key = OUTBOX.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The prefix of every outbox key.
pub fn outbox_prefix() -> &'static [u8] {
    OUTBOX
}

pub fn outbox_seq(key: &[u8]) -> u64 {
    be_u64(&key[OUTBOX.len()..])
}

/// The processor's position in the journal.
pub const CURSOR: &[u8] = b"meta/cursor";
/// The last event sequence number assigned.
pub const OUTBOX_SEQ: &[u8] = b"meta/outbox_seq";
/// This database's instance id, which seeds every id deskgate mints.
pub const INSTANCE_ID: &[u8] = b"meta/instance_id";

pub fn counter(name: &str) -> Vec<u8> {
    format!("meta/counter/{name}").into_bytes()
}

pub fn contact(id: &str) -> Vec<u8> {
    format!("contact/{id}").into_bytes()
}

pub fn identity(index_key: &str) -> Vec<u8> {
    format!("identity/{index_key}").into_bytes()
}

/// Channel ids cannot contain NUL, so the separator is unambiguous.
pub fn thread(channel: &str, thread_key: &str) -> Vec<u8> {
    format!("thread/{channel}\0{thread_key}").into_bytes()
}

/// An email Message-ID seen on a channel → the conversation it belongs to. Channel ids cannot
/// contain NUL, so the separator is unambiguous.
pub fn email_message(channel: &str, message_id: &str) -> Vec<u8> {
    format!("email-msgid/{channel}\0{message_id}").into_bytes()
}

pub fn conversation(id: &str) -> Vec<u8> {
    format!("conversation/{id}").into_bytes()
}

pub fn ticket(id: &str) -> Vec<u8> {
    format!("ticket/{id}").into_bytes()
}

pub const QUARANTINE: &[u8] = b"quarantine/";

pub fn quarantine(journal_seq: u64) -> Vec<u8> {
    let mut key = QUARANTINE.to_vec();
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}

/// Reads a big-endian u64 from the first eight bytes; shorter input reads as 0 so that a
/// damaged key never panics the reader.
pub fn be_u64(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Routing's state (directory, ticket mirror status and owner, rotations, spam): `routing/…`.
pub fn routing(suffix: &str) -> Vec<u8> {
    format!("routing/{suffix}").into_bytes()
}

/// The outcome of the control record at this journal seq, for the handler waiting on it.
pub fn control_outcome(journal_seq: u64) -> Vec<u8> {
    let mut key = b"control/".to_vec();
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}
