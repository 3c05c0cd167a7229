//! Splitting chosen mails off a conversation: which mails go (the chosen ones and every mail
//! that replies to them), and moving them with their share of the Message-ID index, so that a
//! later mail follows the mail it answers.
//!
//! Threading keeps, for each mail of a conversation, its Message-ID and the ids it replies to
//! ([`MessageLinks`], under `conv_links/`). The journal cannot serve: retention deletes old
//! records while their conversations live on. A mail replies to another when it names the
//! other's Message-ID in In-Reply-To or References; the replies of a moved mail move too,
//! transitively, so a client that trims References still follows its parent.
//!
//! The index moves by this rule: an id goes with the new conversation when it is a moved mail's
//! own, or when only moved mails refer to it (a parent that never arrived); an id that a mail
//! staying behind is or refers to stays (the thread's root, typically).
//!
//! The new conversation remembers the conversation it came from ([`family`]): a later mail
//! that names mails of both (a reply to a moved mail whose References still list the root)
//! goes where its most specific id points, instead of to the older ticket with a merge
//! suggestion, which is what two threads joined by arrival order get.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::email::{links, MAX_NAMED};
use super::Conversation;
use crate::model::Inbound;
use crate::store::{keys, StateBatch, StoreError};

/// What threading knew of one mail: enough to tell, without the journal, which mails reply to
/// which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageLinks {
    pub message_id: String,
    /// In-Reply-To, the ids that can link (see the module docs of `email`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_reply_to: Vec<String>,
    /// References in header order: its root and newest entries, as threading looks them up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    pub received_at: DateTime<Utc>,
}

impl MessageLinks {
    fn of(inbound: &Inbound) -> Option<MessageLinks> {
        let email = inbound.email.as_ref()?;
        let linking = |ids: &[String]| -> Vec<String> {
            ids.iter().filter(|id| links(id)).cloned().collect()
        };
        let mut references = linking(&email.references);
        if references.len() > MAX_NAMED {
            // The root and the newest entries: the ones that find a thread.
            references.drain(1..references.len() - (MAX_NAMED - 1));
        }
        Some(MessageLinks {
            message_id: email.message_id.clone(),
            in_reply_to: linking(&email.in_reply_to),
            references,
            received_at: inbound.received_at,
        })
    }

    /// Every id the mail replies to.
    fn parents(&self) -> impl Iterator<Item = &String> {
        self.in_reply_to.iter().chain(&self.references)
    }
}

/// Records the links of a mail threaded into `conversation` (nothing for other channels: their
/// messages have no reply identity).
pub fn remember(batch: &mut StateBatch<'_>, conversation: &str, seq: u64, inbound: &Inbound) {
    if let Some(links) = MessageLinks::of(inbound) {
        batch.put(keys::conversation_link(conversation, seq), &links);
    }
}

/// The links of a conversation's mails, by journal seq (ascending).
pub fn links_of(
    batch: &StateBatch<'_>,
    conversation: &str,
) -> Result<Vec<(u64, MessageLinks)>, StoreError> {
    let prefix = keys::conversation_links(conversation);
    let mut out = Vec::new();
    for key in batch.keys_with_prefix(&prefix)? {
        let seq = keys::be_u64(&key[prefix.len()..]);
        if let Some(found) = batch.get::<MessageLinks>(&key)? {
            out.push((seq, found));
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// Removes a forgotten conversation's links.
pub(super) fn forget(batch: &mut StateBatch<'_>, conversation: &str) -> Result<(), StoreError> {
    for key in batch.keys_with_prefix(&keys::conversation_links(conversation))? {
        batch.remove(key);
    }
    Ok(())
}

/// The chosen mails and every mail that replies to one of them, transitively.
pub fn with_replies(mails: &[(u64, MessageLinks)], chosen: &BTreeSet<u64>) -> BTreeSet<u64> {
    let mut moved = chosen.clone();
    let mut moved_ids: HashSet<&str> = mails
        .iter()
        .filter(|(seq, _)| moved.contains(seq))
        .map(|(_, m)| m.message_id.as_str())
        .collect();
    // A reply can come before its parent in the journal (arrival order), so repeat until
    // nothing more joins; each pass adds at least one mail or ends.
    loop {
        let joining: Vec<&(u64, MessageLinks)> = mails
            .iter()
            .filter(|(seq, m)| {
                !moved.contains(seq) && m.parents().any(|p| moved_ids.contains(p.as_str()))
            })
            .collect();
        if joining.is_empty() {
            return moved;
        }
        for (seq, m) in joining {
            moved.insert(*seq);
            moved_ids.insert(&m.message_id);
        }
    }
}

/// The first conversation of a chain of splits that `conversation` belongs to (itself, when
/// nothing was ever split off it or it off anything).
pub fn family(conversation: &Conversation) -> &str {
    conversation
        .split_from
        .as_deref()
        .unwrap_or(&conversation.id)
}

/// Moves the mails `moved` (journal seqs) from `from` to `to`: their links, their entries in
/// the index of journal records, and the Message-IDs that go with them (see the module docs).
pub fn move_mails(
    batch: &mut StateBatch<'_>,
    (from, to): (&Conversation, &Conversation),
    mails: &[(u64, MessageLinks)],
    moved: &BTreeSet<u64>,
) -> Result<(), StoreError> {
    let mut staying_ids: HashSet<&str> = HashSet::new();
    let mut moving_own: HashSet<&str> = HashSet::new();
    let mut moving_named: HashSet<&str> = HashSet::new();
    for (seq, m) in mails {
        if moved.contains(seq) {
            moving_own.insert(&m.message_id);
            moving_named.insert(&m.message_id);
            moving_named.extend(m.parents().map(String::as_str));
            batch.remove(keys::conversation_link(&from.id, *seq));
            batch.put(keys::conversation_link(&to.id, *seq), m);
            // Journal retention may have removed the record and its entry already.
            let record = keys::conversation_message(&from.id, *seq);
            if batch.contains(&record)? {
                batch.remove(record);
                batch.put(keys::conversation_message(&to.id, *seq), &());
            }
        } else {
            staying_ids.insert(&m.message_id);
            staying_ids.extend(m.parents().map(String::as_str));
        }
    }
    let prefix = keys::conversation_email_ids(&from.id);
    for key in batch.keys_with_prefix(&prefix)? {
        let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let Some((channel, id)) = rest.split_once('\0') else {
            continue;
        };
        let stays = staying_ids.contains(id) && !moving_own.contains(id);
        // An id no moved mail names stays too (a mail threaded before links were kept, whose
        // ids nothing here knows).
        if stays || !moving_named.contains(id) {
            continue;
        }
        let index = keys::email_message(channel, id);
        if batch.get::<String>(&index)?.as_deref() == Some(from.id.as_str()) {
            batch.put(index, &to.id);
        }
        batch.remove(key);
        batch.put(keys::conversation_email_id(&to.id, channel, id), &());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(seq: u64, id: &str, parents: &[&str]) -> (u64, MessageLinks) {
        let links = MessageLinks {
            message_id: id.to_owned(),
            in_reply_to: parents.last().map(|p| p.to_string()).into_iter().collect(),
            references: parents.iter().map(|p| p.to_string()).collect(),
            received_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        (seq, links)
    }

    #[test]
    fn replies_follow_the_chosen_mail_transitively_and_in_any_order() {
        let mails = [
            mail(1, "a@x", &[]),
            // c came before its parent b, and trims References to its parent.
            mail(2, "c@x", &["b@x"]),
            mail(3, "b@x", &["a@x"]),
            mail(4, "d@x", &["a@x"]),
            mail(5, "e@x", &["c@x"]),
        ];
        let moved = with_replies(&mails, &BTreeSet::from([3]));
        assert_eq!(moved, BTreeSet::from([2, 3, 5]));
    }

    #[test]
    fn long_references_keep_their_root_and_newest_entries() {
        let references: Vec<String> = (0..100).map(|i| format!("r{i}@x")).collect();
        let mut inbound = Inbound::new(
            "mail",
            "m@x",
            "m@x",
            crate::model::Sender::default(),
            "",
            DateTime::<Utc>::UNIX_EPOCH,
        );
        inbound.email = Some(crate::model::EmailMeta {
            message_id: "m@x".into(),
            in_reply_to: vec!["r99@x".into(), "no-at".into()],
            references,
            ..crate::model::EmailMeta::default()
        });
        let links = MessageLinks::of(&inbound).unwrap();
        assert_eq!(links.in_reply_to, ["r99@x"]);
        assert_eq!(links.references.len(), MAX_NAMED);
        assert_eq!(links.references[0], "r0@x");
        assert_eq!(links.references[1], "r69@x");
        assert_eq!(links.references.last().unwrap(), "r99@x");
    }
}
