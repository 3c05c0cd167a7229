//! IMAP mailbox checkpoints: per channel and folder, the UIDVALIDITY and the last UID whose
//! mail is durable in the journal.
//!
//! They live in their own keyspace, `mailboxes`, written by the mailbox tasks only after the
//! journal append of that mail returned. They are not flushed here: the journal writer's next
//! flush carries them, and a checkpoint lost in a crash only makes the task fetch again mail
//! that the journal then answers as duplicates.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Store, StoreError};

/// Where a mailbox's sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxCheckpoint {
    pub uid_validity: u32,
    /// Every mail with a UID up to this one is journaled (or was before the initial sync point).
    pub last_uid: u32,
    /// Where deskgate's sync started (from `initial_sync`): mail after this UID and up to
    /// `last_uid` is mail deskgate journaled, which `after_ingest` may act on.
    #[serde(default)]
    pub first_uid: u32,
    /// The newest UID when this sync started (first connect, or a resync after UIDVALIDITY
    /// changed): mail up to it was already in the folder, an import, not news. 0 for
    /// checkpoints written before this field (nothing is taken for history then).
    #[serde(default)]
    pub import_upto: u32,
}

/// Channel ids cannot contain NUL (config validation), so the separator is unambiguous.
fn key(channel: &str, folder: &str) -> Vec<u8> {
    format!("{channel}\0{folder}").into_bytes()
}

impl Store {
    pub fn mailbox_checkpoint(
        &self,
        channel: &str,
        folder: &str,
    ) -> Result<Option<MailboxCheckpoint>, StoreError> {
        match self.mailboxes.get(key(channel, folder))? {
            Some(value) => decode(&format_args!("mailboxes/{channel}/{folder}"), &value).map(Some),
            None => Ok(None),
        }
    }

    /// Stores a checkpoint (not flushed: see the module docs).
    pub fn set_mailbox_checkpoint(
        &self,
        channel: &str,
        folder: &str,
        checkpoint: MailboxCheckpoint,
    ) -> Result<(), StoreError> {
        self.wrote(
            self.mailboxes
                .insert(key(channel, folder), encode(&checkpoint)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_kept_per_channel_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.mailbox_checkpoint("a", "INBOX").unwrap(), None);
        let point = MailboxCheckpoint {
            uid_validity: 7,
            last_uid: 42,
            first_uid: 0,
            import_upto: 0,
        };
        store.set_mailbox_checkpoint("a", "INBOX", point).unwrap();
        store
            .set_mailbox_checkpoint(
                "a",
                "Other",
                MailboxCheckpoint {
                    uid_validity: 1,
                    last_uid: 1,
                    first_uid: 0,
                    import_upto: 0,
                },
            )
            .unwrap();
        assert_eq!(store.mailbox_checkpoint("a", "INBOX").unwrap(), Some(point));
        assert_eq!(store.mailbox_checkpoint("b", "INBOX").unwrap(), None);
    }
}
