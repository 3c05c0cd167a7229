//! Key layouts. Numbers are big-endian so that byte order is numeric order.

use chrono::{DateTime, Utc};

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

/// Whether `key` is an event's: it lives in the `outbox` keyspace and is never carried.
pub fn is_outbox(key: &[u8]) -> bool {
    key.starts_with(OUTBOX)
}

pub fn outbox_seq(key: &[u8]) -> u64 {
    be_u64(&key[OUTBOX.len()..])
}

/// Prefixes of keys written once for one journal record (an index entry, an outcome): read
/// back by scans, by the HTTP handlers from the engine, or seldom by name.
const PER_RECORD: [&[u8]; 7] = [
    b"conv_msg/",
    b"conv_links/",
    b"transcript_line/",
    b"consent_tap/",
    b"control/",
    b"outbound_request/",
    QUARANTINE,
];

/// Whether `key` is one written once for one journal record: a message's index entries, an
/// outcome keyed by journal seq.
pub fn is_per_record(key: &[u8]) -> bool {
    PER_RECORD.iter().any(|prefix| key.starts_with(prefix))
}

/// The processor's position in the journal.
pub const CURSOR: &[u8] = b"meta/cursor";
/// The last event sequence number assigned.
pub const OUTBOX_SEQ: &[u8] = b"meta/outbox_seq";
/// This database's instance id, which seeds every id deskgate mints.
pub const INSTANCE_ID: &[u8] = b"meta/instance_id";

/// The concatenation of `parts`, allocated once. Key builders run many times per message;
/// built with `format!` they were about half of the 14% of a processor step's instructions
/// that formatting took (callgrind, `docs/performance.md`).
fn join(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        key.extend_from_slice(part.as_bytes());
    }
    key
}

const COUNTER: &str = "meta/counter/";

pub fn counter(name: &str) -> Vec<u8> {
    join(&[COUNTER, name])
}

/// The counter numbering the Message-IDs of mail deskgate sends on a conversation.
pub fn message_id_counter(conversation: &str) -> Vec<u8> {
    join(&[COUNTER, "mail/", conversation])
}

pub fn contact(id: &str) -> Vec<u8> {
    join(&["contact/", id])
}

/// Channel ids cannot contain NUL, so the separator is unambiguous.
pub fn thread(channel: &str, thread_key: &str) -> Vec<u8> {
    join(&["thread/", channel, "\0", thread_key])
}

/// An email Message-ID seen on a channel → the conversation it belongs to. Channel ids cannot
/// contain NUL, so the separator is unambiguous.
pub fn email_message(channel: &str, message_id: &str) -> Vec<u8> {
    join(&["email-msgid/", channel, "\0", message_id])
}

/// The email Message-IDs threading indexed for a conversation:
/// `conv_mid/{conversation}` NUL `{channel}` NUL `{message_id}` → `()`, so that forgetting the
/// conversation finds its `email-msgid/` entries.
pub fn conversation_email_ids(conversation: &str) -> Vec<u8> {
    join(&["conv_mid/", conversation, "\0"])
}

pub fn conversation_email_id(conversation: &str, channel: &str, message_id: &str) -> Vec<u8> {
    let mut key = conversation_email_ids(conversation);
    key.extend_from_slice(channel.as_bytes());
    key.push(0);
    key.extend_from_slice(message_id.as_bytes());
    key
}

/// What threading knew of each mail of a conversation (its Message-ID and the ids it replies
/// to), for a split by message: `conv_links/{conversation}` NUL seq → `MessageLinks`.
pub fn conversation_links(conversation: &str) -> Vec<u8> {
    join(&["conv_links/", conversation, "\0"])
}

pub fn conversation_link(conversation: &str, journal_seq: u64) -> Vec<u8> {
    let mut key = conversation_links(conversation);
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}

pub fn conversation(id: &str) -> Vec<u8> {
    join(&["conversation/", id])
}

pub fn ticket(id: &str) -> Vec<u8> {
    join(&["ticket/", id])
}

/// Conversations of a contact: `contact_conv/{contact}` NUL `{conversation}` → `()`.
pub fn contact_conversations(contact: &str) -> Vec<u8> {
    join(&["contact_conv/", contact, "\0"])
}

pub fn contact_conversation(contact: &str, conversation: &str) -> Vec<u8> {
    let mut key = contact_conversations(contact);
    key.extend_from_slice(conversation.as_bytes());
    key
}

/// Tickets of a contact (the tickets whose `contact_id` it is):
/// `contact_ticket/{contact}` NUL `{ticket}` → `()`, so that merging the contact away moves
/// every one of them, whichever conversations they hold.
pub fn contact_tickets(contact: &str) -> Vec<u8> {
    join(&["contact_ticket/", contact, "\0"])
}

pub fn contact_ticket(contact: &str, ticket: &str) -> Vec<u8> {
    let mut key = contact_tickets(contact);
    key.extend_from_slice(ticket.as_bytes());
    key
}

/// Present once every ticket stored before the `contact_ticket/` index existed is in it.
pub const CONTACT_TICKETS_INDEXED: &[u8] = b"meta/contact_tickets_indexed";

/// Messages a contact wrote on an explicit-consent channel before consenting, kept until they
/// do: `consent_held/{contact}` NUL `{channel}` NUL `{seq}` → the [`crate::model::Inbound`].
pub fn consent_held(contact: &str) -> Vec<u8> {
    join(&["consent_held/", contact, "\0"])
}

pub fn consent_held_on(contact: &str, channel: &str) -> Vec<u8> {
    let mut key = consent_held(contact);
    key.extend_from_slice(channel.as_bytes());
    key.push(0);
    key
}

pub fn consent_held_message(contact: &str, channel: &str, journal_seq: u64) -> Vec<u8> {
    let mut key = consent_held_on(contact, channel);
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}

/// Journal records of a contact's consent taps, which the message index does not cover:
/// `consent_tap/{contact}` NUL `{seq}` → `()`, redacted with the contact.
pub fn consent_taps(contact: &str) -> Vec<u8> {
    join(&["consent_tap/", contact, "\0"])
}

pub fn consent_tap(contact: &str, journal_seq: u64) -> Vec<u8> {
    let mut key = consent_taps(contact);
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}

/// Journal seqs of a conversation's messages: `conv_msg/{conversation}` NUL + seq → `()`.
pub fn conversation_messages(conversation: &str) -> Vec<u8> {
    join(&["conv_msg/", conversation, "\0"])
}

pub fn conversation_message(conversation: &str, journal_seq: u64) -> Vec<u8> {
    let mut key = conversation_messages(conversation);
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}

/// The transcript kept for an open chat conversation until it closes: its counts
/// (`transcript/{conversation}`) and its lines (`transcript_line/{conversation}` NUL `{seq}`).
pub fn transcript(conversation: &str) -> Vec<u8> {
    join(&["transcript/", conversation])
}

pub fn transcript_lines(conversation: &str) -> Vec<u8> {
    join(&["transcript_line/", conversation, "\0"])
}

pub fn transcript_line(conversation: &str, journal_seq: u64) -> Vec<u8> {
    let mut key = transcript_lines(conversation);
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}

/// Outgoing messages on a conversation: `conv_out/{conversation}` NUL `{item}` → `()`, so that
/// erasing its contact finds them.
pub fn conversation_outgoing(conversation: &str) -> Vec<u8> {
    join(&["conv_out/", conversation, "\0"])
}

pub fn conversation_outgoing_item(conversation: &str, item_id: &str) -> Vec<u8> {
    let mut key = conversation_outgoing(conversation);
    key.extend_from_slice(item_id.as_bytes());
    key
}

/// The outcome of a journaled control request, read back by the waiting handler.
pub fn control_outcome(journal_seq: u64) -> Vec<u8> {
    let mut key = b"control/".to_vec();
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}

/// Erasures committed in state whose journal redaction and blob deletion are still to do.
pub const ERASE_PENDING: &[u8] = b"erase_pending/";

pub fn erase_pending(journal_seq: u64) -> Vec<u8> {
    let mut key = ERASE_PENDING.to_vec();
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
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

// What the tickets step keeps beside the tickets (`tickets/state.rs`), under `routing/…`.

const ROUTING: &str = "routing/";

/// A conversation's bookkeeping for the status triggers (closed, from a forward, spam).
pub fn conversation_state(id: &str) -> Vec<u8> {
    join(&[ROUTING, "conversation/", id])
}

/// The user a channel's round robin picked last.
pub fn rotation(channel: &str) -> Vec<u8> {
    join(&[ROUTING, "rotation/", channel])
}

/// A contact flagged as a spam sender.
pub fn spam_contact(contact: &str) -> Vec<u8> {
    join(&[ROUTING, "spam_contact/", contact])
}

/// Users and teams added or changed through the control API, and availability.
pub fn directory() -> Vec<u8> {
    join(&[ROUTING, "directory"])
}

/// Open tickets per owner.
pub fn open_tickets() -> Vec<u8> {
    join(&[ROUTING, "open_tickets"])
}

/// Spam conversations awaiting purge, oldest first.
pub fn spam_list() -> Vec<u8> {
    join(&[ROUTING, "spam_list"])
}

const CLOSED: &[u8] = b"routing/closed/";

/// A closed ticket's entry in the index of closed tickets, by the second it closed.
pub fn closed(at: DateTime<Utc>, ticket: &str) -> Vec<u8> {
    let mut key = closed_bound(at.timestamp());
    key.extend_from_slice(ticket.as_bytes());
    key
}

/// The start of the index of closed tickets.
pub fn closed_start() -> &'static [u8] {
    CLOSED
}

/// The end (exclusive) of the index entries of tickets closed at or before `cutoff`.
pub fn closed_until(cutoff: DateTime<Utc>) -> Vec<u8> {
    closed_bound(cutoff.timestamp().saturating_add(1))
}

fn closed_bound(seconds: i64) -> Vec<u8> {
    let mut key = CLOSED.to_vec();
    key.extend_from_slice(&(seconds.max(0) as u64).to_be_bytes());
    key
}

/// The ticket id of an entry of the closed index.
pub fn closed_ticket(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(CLOSED.len() + 8..).unwrap_or_default()).into_owned()
}

/// An outgoing message (see `outbound`).
pub fn outgoing(item_id: &str) -> Vec<u8> {
    join(&["outgoing/", item_id])
}

/// Outgoing messages the sender still has to deliver, in the order they were queued (the value
/// is the item id).
pub const OUTGOING_PENDING: &[u8] = b"outgoing_pending/";

pub fn outgoing_pending(queue_seq: u64) -> Vec<u8> {
    let mut key = OUTGOING_PENDING.to_vec();
    key.extend_from_slice(&queue_seq.to_be_bytes());
    key
}

/// What became of an outbound request journaled at this seq, for the control API's answer.
pub fn outbound_request(journal_seq: u64) -> Vec<u8> {
    let mut key = b"outbound_request/".to_vec();
    key.extend_from_slice(&journal_seq.to_be_bytes());
    key
}

/// What deskgate needs to answer on a conversation (addresses, threading, window times).
pub fn reply_context(conversation_id: &str) -> Vec<u8> {
    join(&["reply_context/", conversation_id])
}

/// Addresses that hard-bounced: no automatic mail goes to them.
pub fn suppressed(address: &str) -> Vec<u8> {
    join(&["suppressed/", address])
}

/// The last time an agent's mail reply went out on a ticket (the `agent_emailed` trigger).
pub fn agent_emailed(ticket_id: &str) -> Vec<u8> {
    join(&["agent_emailed/", ticket_id])
}

/// The last ticket number given (`#1042`): numbers count up and are never given twice.
pub const TICKET_NUMBER: &[u8] = b"meta/ticket_number";

/// A ticket's number → its id, for mail whose subject carries the desk's tag.
pub fn ticket_number(number: u64) -> Vec<u8> {
    let mut key = b"ticket_no/".to_vec();
    key.extend_from_slice(&number.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are the layout of every state directory already written: the builders must keep
    /// spelling them byte for byte as they did.
    #[test]
    fn keys_keep_their_layout() {
        let cases: [(Vec<u8>, &[u8]); 12] = [
            (counter("ticket"), b"meta/counter/ticket"),
            (message_id_counter("c1"), b"meta/counter/mail/c1"),
            (contact("k1"), b"contact/k1"),
            (thread("mail", "t1"), b"thread/mail\0t1"),
            (email_message("mail", "<m@x>"), b"email-msgid/mail\0<m@x>"),
            (
                conversation_email_id("c1", "mail", "<m@x>"),
                b"conv_mid/c1\0mail\0<m@x>",
            ),
            (conversation_links("c1"), b"conv_links/c1\0"),
            (contact_tickets("k1"), b"contact_ticket/k1\0"),
            (conversation_state("c1"), b"routing/conversation/c1"),
            (spam_contact("k1"), b"routing/spam_contact/k1"),
            (open_tickets(), b"routing/open_tickets"),
            (agent_emailed("t1"), b"agent_emailed/t1"),
        ];
        for (built, expected) in cases {
            assert_eq!(built, expected, "{}", String::from_utf8_lossy(expected));
        }
    }

    /// The carry leaves out exactly the keys written once for one record: a builder whose
    /// prefix drifted from the list would fill the carry again, or a key read by name each
    /// step would miss it.
    #[test]
    fn per_record_keys_are_told_from_the_rest() {
        let per_record = [
            conversation_message("c1", 7),
            conversation_link("c1", 7),
            transcript_line("c1", 7),
            consent_tap("k1", 7),
            control_outcome(7),
            outbound_request(7),
            quarantine(7),
        ];
        for key in &per_record {
            assert!(is_per_record(key), "{}", String::from_utf8_lossy(key));
        }
        let read_by_name = [
            contact("k1"),
            conversation("c1"),
            ticket("t1"),
            reply_context("c1"),
            thread("api", "t1"),
            contact_conversation("k1", "c1"),
            transcript("c1"),
            consent_held_message("k1", "chat", 7),
            CURSOR.to_vec(),
        ];
        for key in &read_by_name {
            assert!(!is_per_record(key), "{}", String::from_utf8_lossy(key));
        }
    }
}
