//! Email threading, independent of arrival order (JWZ's rule, as notmuch, mutt and MimeKit
//! thread): a mail continues the conversation of any Message-ID it *is* or *refers to*
//! (In-Reply-To, References, a bounce's returned headers), and the index remembers every id a
//! mail refers to, not only its own, whether or not that mail has arrived. A reply that comes
//! before its parent leaves the parent's id pointing at its conversation, so the parent (and
//! the parent's other replies) join it when they come.
//!
//! Ids without `@` are not RFC 5322 msg-ids (old git send-email wrote `<yes>` into
//! In-Reply-To) and join nothing. deskgate's own Message-IDs name their conversation and need
//! no index entry.
//!
//! A mail whose ids lead to conversations of several tickets proves that those tickets are one
//! thread: it goes to the oldest of them and a merge is suggested, never made (a thread split
//! by arrival order stays split until someone merges it; two threads are never joined
//! silently). Conversations an agent split apart are the exception: they are one thread on
//! purpose, and a mail naming several of them follows its most specific id (see [`super::split`]).
//!
//! Bounds: at most [`MAX_NAMED`] ids of a mail are looked up and indexed (In-Reply-To, the
//! References root and its newest entries), ids longer than [`MAX_ID_BYTES`] are passed over,
//! and every entry is also kept under its conversation, so that forgetting the conversation
//! (closed-ticket retention, deletion, spam purge, erasure) removes it.

use super::{existing, required, Conversation};
use crate::events::data::{EventData, MessageRef, TicketMergeSuggested};
use crate::model::{Inbound, Ticket};
use crate::store::{keys, StateBatch, StoreError};

/// Ids of one mail looked up and indexed at most: a References header can list hundreds, and
/// its root and newest entries are the ones that find a thread.
pub const MAX_NAMED: usize = 32;

/// Longer ids are not indexed (real ones are well under 100 bytes; this keeps keys small).
pub const MAX_ID_BYTES: usize = 250;

/// Tickets one ticket remembers having been suggested to merge with, so that every later mail
/// of a split thread does not suggest it again. Beyond it a suggestion may repeat.
const MAX_SUGGESTED: usize = 64;

/// Where a mail goes, and the tickets it proves to be the same thread.
#[derive(Debug, Default)]
pub struct Found {
    pub conversation: Option<String>,
    /// Other tickets whose conversations the mail refers to, not yet suggested.
    pub merge_with: Vec<String>,
}

/// Whether an id can link mails: an RFC 5322 msg-id has an `@`.
pub(super) fn links(id: &str) -> bool {
    id.contains('@') && id.len() <= MAX_ID_BYTES
}

/// The ids a mail refers to, most specific first: In-Reply-To (the direct parent), its own id
/// (replies that arrived before it left it in the index), References newest to oldest but the
/// root kept, and a bounce's returned Message-ID. At most [`MAX_NAMED`], each once.
pub fn named_ids(inbound: &Inbound) -> Vec<&str> {
    let Some(email) = &inbound.email else {
        return Vec::new();
    };
    let references = &email.references;
    let newest = references.iter().rev().take(MAX_NAMED.saturating_sub(2));
    let bounce = inbound
        .flags
        .bounce
        .iter()
        .flat_map(|b| b.message_id.iter());
    let mut ids: Vec<&str> = Vec::new();
    let all = email
        .in_reply_to
        .iter()
        .chain(std::iter::once(&email.message_id))
        .chain(newest)
        .chain(references.first())
        .chain(bounce);
    for id in all {
        if ids.len() == MAX_NAMED {
            break;
        }
        if links(id) && !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    ids
}

/// The conversation a mail continues (see the module docs), and the other tickets it links;
/// failing any id, the ticket its subject tag names (`by_tag`).
pub fn find(
    batch: &StateBatch<'_>,
    inbound: &Inbound,
    contact_id: &str,
    ticket_tag: &str,
) -> Result<Found, StoreError> {
    // (conversation, its ticket) for each id that names a live conversation, in id order.
    let mut candidates: Vec<(String, Ticket)> = Vec::new();
    // Per family of split conversations, the one the mail follows: (family, conversation,
    // rank), the best rank winning.
    let mut families: Vec<(String, String, (bool, usize))> = Vec::new();
    for (position, id) in named_ids(inbound).into_iter().enumerate() {
        let own = crate::message_id::own_conversation_of(id);
        // An id deskgate minted names the conversation an agent wrote on, which a later split
        // does not change; the customer's ids moved with the split, so they rank first.
        let rank = (own.is_some(), position);
        let named = match own {
            Some(own) => Some(own),
            None => batch.get::<String>(&keys::email_message(&inbound.channel, id))?,
        };
        // A deleted conversation leaves no index entries, but a stale one names nothing.
        let Some(conversation) = existing(batch, named)? else {
            continue;
        };
        let found: Conversation = required(batch, &keys::conversation(&conversation))?;
        let family = super::split::family(&found);
        match families.iter_mut().find(|(f, _, _)| f == family) {
            Some(best) if best.2 <= rank => {}
            Some(best) => (best.1, best.2) = (conversation.clone(), rank),
            None => families.push((family.to_owned(), conversation.clone(), rank)),
        }
        if candidates.iter().any(|(c, _)| *c == conversation) {
            continue;
        }
        let ticket: Ticket = required(batch, &keys::ticket(&found.ticket_id))?;
        candidates.push((conversation, ticket));
    }
    // Mails split apart by an agent stay apart: within a family only the conversation of the
    // mail's most specific id counts (see `split`).
    candidates.retain(|(c, _)| families.iter().any(|(_, best, _)| best == c));
    let Some((conversation, oldest)) = candidates
        .iter()
        .min_by(|(_, a), (_, b)| older(a, b))
        .map(|(c, t)| (c.clone(), t))
    else {
        return Ok(Found {
            conversation: by_tag(batch, inbound, contact_id, ticket_tag)?,
            merge_with: Vec::new(),
        });
    };
    let mut merge_with: Vec<String> = Vec::new();
    for (_, ticket) in &candidates {
        if ticket.id != oldest.id
            && !merge_with.contains(&ticket.id)
            && !oldest.merge_suggested.contains(&ticket.id)
        {
            merge_with.push(ticket.id.clone());
        }
    }
    Ok(Found {
        conversation: Some(conversation),
        merge_with,
    })
}

/// The ticket number in a subject's tag (`[#1042]` for the tag `#`), the first one found.
pub fn tagged_number(subject: &str, tag: &str) -> Option<u64> {
    let opening = format!("[{tag}");
    let mut rest = subject;
    while let Some(at) = rest.find(&opening) {
        rest = &rest[at + opening.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(']') {
            return rest[..digits].parse().ok();
        }
    }
    None
}

/// A reply whose mail client dropped In-Reply-To and References but kept the desk's tag in the
/// subject: the conversation on this channel of the ticket the tag names, only when the
/// sender is a participant of that ticket (a stranger guessing numbers writes into nothing)
/// and the mail is not a forward (a forward starts a new matter, whatever its subject says).
fn by_tag(
    batch: &StateBatch<'_>,
    inbound: &Inbound,
    contact_id: &str,
    ticket_tag: &str,
) -> Result<Option<String>, StoreError> {
    let Some(email) = &inbound.email else {
        return Ok(None);
    };
    let subject = inbound.subject.as_deref().unwrap_or_default();
    let forward = inbound.flags.forwarded || {
        let lower = subject.trim_start().to_lowercase();
        lower.starts_with("fwd:") || lower.starts_with("fw:")
    };
    if !email.in_reply_to.is_empty() || !email.references.is_empty() || forward {
        return Ok(None);
    }
    let Some(number) = tagged_number(subject, ticket_tag) else {
        return Ok(None);
    };
    let Some(ticket) = super::ticket_by_number(batch, number)? else {
        return Ok(None);
    };
    let mut on_channel = None;
    let mut participant =
        ticket.contact_id == contact_id || ticket.participants.iter().any(|p| p == contact_id);
    for id in &ticket.conversations {
        let Some(conversation) = batch.get::<Conversation>(&keys::conversation(id))? else {
            continue;
        };
        participant |= conversation.contact_id == contact_id;
        if conversation.channel == inbound.channel {
            on_channel = Some(conversation.id);
        }
    }
    Ok(on_channel.filter(|_| participant))
}

/// Orders tickets by age: the one opened first (by number, then time, then id).
fn older(a: &Ticket, b: &Ticket) -> std::cmp::Ordering {
    (a.number, a.created_at, &a.id).cmp(&(b.number, b.created_at, &b.id))
}

/// Records the suggestion on the ticket the mail went to, so it is made once.
pub fn remember_suggestion(ticket: &mut Ticket, merge_with: &[String]) {
    for id in merge_with {
        if ticket.merge_suggested.len() < MAX_SUGGESTED && !ticket.merge_suggested.contains(id) {
            ticket.merge_suggested.push(id.clone());
        }
    }
}

/// Points every id the mail is or refers to at its conversation, unless the id already names
/// a live conversation (the first thread an id joined keeps it; a later mail linking two
/// threads finds both).
pub fn index(
    batch: &mut StateBatch<'_>,
    inbound: &Inbound,
    conversation: &str,
) -> Result<(), StoreError> {
    let Some(email) = &inbound.email else {
        return Ok(());
    };
    let mut ids = named_ids(inbound);
    // A mail's own id is indexed even when it links nothing (a content hash for mail without
    // a Message-ID): journal retention finds the message's conversation through it.
    if !ids.contains(&email.message_id.as_str()) {
        ids.push(&email.message_id);
    }
    for id in ids {
        if crate::message_id::own_conversation_of(id).is_some() {
            continue;
        }
        let key = keys::email_message(&inbound.channel, id);
        let named = batch.get::<String>(&key)?;
        if named.as_deref() == Some(conversation) || existing(batch, named)?.is_some() {
            continue;
        }
        batch.put(key, &conversation.to_owned());
        batch.put(
            keys::conversation_email_id(conversation, &inbound.channel, id),
            &(),
        );
    }
    Ok(())
}

/// `deskgate.ticket.merge_suggested` for a mail that went to `threaded.ticket` and referred to
/// mails of the tickets in `threaded.merge_with`: `data.ticket` (where it went),
/// `data.candidates` (the others), `data.conversation`, `data.message` (`id`, `external_id`),
/// `data.reason`.
pub fn merge_suggestion(
    threaded: &super::Threaded,
    inbound: &Inbound,
    message_id: &str,
) -> Option<crate::events::EventDraft> {
    if threaded.merge_with.is_empty() {
        return None;
    }
    let data = TicketMergeSuggested {
        ticket: (&threaded.ticket).into(),
        candidates: threaded.merge_with.clone(),
        conversation: threaded.conversation.id.clone(),
        message: MessageRef {
            id: message_id.to_owned(),
            external_id: inbound.external_id.clone(),
        },
        reason: TicketMergeSuggested::ONE_THREAD.to_owned(),
    };
    Some(crate::events::EventDraft::new(
        &threaded.ticket.id,
        Some(&inbound.channel),
        EventData::TicketMergeSuggested(data),
    ))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use uuid::Uuid;

    use super::super::{forget_email_ids, thread, Threaded};
    use crate::ids::Minter;
    use crate::model::{EmailMeta, Inbound, Sender};
    use crate::store::{keys, Store};

    struct Desk {
        _dir: tempfile::TempDir,
        store: Store,
        minter: Minter,
        n: i64,
    }

    impl Desk {
        fn new() -> Desk {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            Desk {
                _dir: dir,
                store,
                minter: Minter::new(Uuid::nil()),
                n: 0,
            }
        }

        /// Threads one mail with its own id, In-Reply-To and References, in its own step.
        fn mail(&mut self, id: &str, in_reply_to: &[&str], references: &[&str]) -> Threaded {
            self.n += 1;
            let at = DateTime::<Utc>::UNIX_EPOCH + Duration::minutes(self.n);
            let mut inbound = Inbound::new("mail", id, id, Sender::default(), "", at);
            inbound.email = Some(EmailMeta {
                message_id: id.into(),
                in_reply_to: in_reply_to.iter().map(|s| s.to_string()).collect(),
                references: references.iter().map(|s| s.to_string()).collect(),
                ..EmailMeta::default()
            });
            let mut batch = self.store.state_batch();
            let threaded = thread(&mut batch, &self.minter, &inbound, "contact", "#").unwrap();
            batch.commit().unwrap();
            threaded
        }

        fn index_entries(&self) -> usize {
            self.store
                .state_scan::<serde_json::Value>(b"email-msgid/", None, usize::MAX)
                .unwrap()
                .len()
        }
    }

    #[test]
    fn a_parent_arriving_after_its_reply_joins_it() {
        let mut desk = Desk::new();
        let reply = desk.mail("b@x", &["a@x"], &["a@x"]);
        let parent = desk.mail("a@x", &[], &[]);
        assert!(!parent.new_ticket);
        assert_eq!(parent.ticket.id, reply.ticket.id);
        // A sibling reply that names only the parent finds it too.
        let sibling = desk.mail("c@x", &["a@x"], &[]);
        assert_eq!(sibling.ticket.id, reply.ticket.id);
    }

    #[test]
    fn ids_without_at_link_nothing() {
        let mut desk = Desk::new();
        let first = desk.mail("a@x", &["yes"], &[]);
        let second = desk.mail("b@x", &["yes"], &[]);
        assert_ne!(first.ticket.id, second.ticket.id);
        assert!(second.new_ticket);
    }

    #[test]
    fn a_mail_linking_two_tickets_goes_to_the_older_and_suggests_a_merge_once() {
        let mut desk = Desk::new();
        let older = desk.mail("a@x", &[], &[]);
        let newer = desk.mail("c@x", &["b@x"], &[]);
        assert_ne!(older.ticket.id, newer.ticket.id);
        // b replies to a, and c already replied to b: b proves both are one thread.
        let bridge = desk.mail("b@x", &["a@x"], &["a@x"]);
        assert_eq!(bridge.ticket.id, older.ticket.id);
        assert_eq!(bridge.merge_with, std::slice::from_ref(&newer.ticket.id));
        // Nothing was merged: the newer ticket keeps its conversation.
        let again = desk.mail("d@x", &["c@x"], &["a@x", "b@x", "c@x"]);
        assert_eq!(again.ticket.id, older.ticket.id);
        assert!(again.merge_with.is_empty(), "suggested once");
        let newer_reply = desk.mail("e@x", &["c@x"], &[]);
        assert_eq!(newer_reply.ticket.id, newer.ticket.id);
    }

    #[test]
    fn the_index_is_bounded_and_forgotten_with_its_conversation() {
        let mut desk = Desk::new();
        let references: Vec<String> = (0..500).map(|i| format!("r{i}@x")).collect();
        let references: Vec<&str> = references.iter().map(String::as_str).collect();
        let long = format!("{}@x", "l".repeat(300));
        let threaded = desk.mail("a@x", &[long.as_str()], &references);
        assert_eq!(desk.index_entries(), super::MAX_NAMED);
        let mut batch = desk.store.state_batch();
        forget_email_ids(&mut batch, &threaded.conversation.id).unwrap();
        batch.commit().unwrap();
        assert_eq!(desk.index_entries(), 0);
        let conversations = desk
            .store
            .state_scan::<serde_json::Value>(
                &keys::conversation_email_ids(&threaded.conversation.id),
                None,
                usize::MAX,
            )
            .unwrap();
        assert!(conversations.is_empty());
    }
}
