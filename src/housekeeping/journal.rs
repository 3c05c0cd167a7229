//! Journal retention: deletes records the processor applied more than `journal.retention_secs`
//! ago, with their deduplication keys and what the state keys about each of them (a control
//! or outbound request's outcome, a message's entry in its conversation's index), so that the
//! journal holds a bounded window of recent input instead of everything ever received.
//!
//! Only records at or before the processor's published cursor go (that position is flushed),
//! oldest first, stopping at the first younger record: the journal is in arrival order. The
//! newest record always stays, because the journal writer takes its next sequence number
//! from it at start-up. A record that no longer decodes is left where it is (its key cannot be
//! named) and passed over. Deleting the state outcomes holds the write gate, as every other
//! state writer does.

use chrono::{DateTime, Utc};

use crate::model::{DedupeKey, Record};
use crate::store::{keys, Store, StoreError, WriteGate};

/// Records looked at and deleted per batch.
pub(super) const CHUNK: usize = 2048;

/// One pass: deletes applied records (seq ≤ `cursor`) accepted before `cutoff`. Returns how
/// many it deleted.
pub fn compact(
    store: &Store,
    cursor: u64,
    cutoff: DateTime<Utc>,
    gate: &WriteGate,
) -> Result<usize, StoreError> {
    let upto = cursor.min(store.journal_last_seq()?.saturating_sub(1));
    let mut deleted = 0;
    let mut after = 0;
    loop {
        let items = store.journal_read(after, upto, CHUNK)?;
        let Some(last) = items.last().map(|item| item.seq) else {
            return Ok(deleted);
        };
        let mut old = Vec::with_capacity(items.len());
        let mut state_keys = Vec::new();
        let mut reached_young = false;
        for item in &items {
            match &item.record {
                Ok(record) if record.accepted_at() > cutoff => {
                    reached_young = true;
                    break;
                }
                Ok(record) => {
                    state_keys.extend(state_about(store, item.seq, record)?);
                    old.push((item.seq, DedupeKey::of(record)));
                }
                Err(error) => {
                    tracing::warn!(seq = item.seq, %error, "journal retention passes over an undecodable record");
                }
            }
        }
        if !old.is_empty() {
            {
                let _whole = gate.hold();
                store.journal_forget(&old, state_keys)?;
            }
            deleted += old.len();
            metrics::counter!("deskgate_journal_compacted_total").increment(old.len() as u64);
        }
        if reached_young || items.len() < CHUNK {
            return Ok(deleted);
        }
        after = last;
    }
}

/// The state keys that exist only because of the record at `seq`: its outcome (control and
/// outbound requests) and, for a message, its entry in its conversation's index (found the way
/// threading recorded it: by its Message-ID on email channels, else by its thread).
fn state_about(store: &Store, seq: u64, record: &Record) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut found = vec![keys::control_outcome(seq), keys::outbound_request(seq)];
    if let Record::Inbound(inbound) = record {
        let index = match &inbound.email {
            Some(email) => keys::email_message(&inbound.channel, &email.message_id),
            None => keys::thread(&inbound.channel, &inbound.thread_key),
        };
        if let Some(conversation) = store.state_get::<String>(&index)? {
            found.push(keys::conversation_message(&conversation, seq));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Inbound, Sender};

    fn record(id: &str, minutes: i64) -> Record {
        let at = DateTime::UNIX_EPOCH + chrono::Duration::minutes(minutes);
        Record::Inbound(Box::new(Inbound::new(
            "api",
            id,
            "t",
            Sender::default(),
            "hello",
            at,
        )))
    }

    #[test]
    fn applied_records_older_than_the_cutoff_go_with_their_keys_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let records: Vec<Record> = (0..5).map(|i| record(&format!("m{i}"), i * 10)).collect();
        let keys: Vec<DedupeKey> = records.iter().map(DedupeKey::of).collect();
        store
            .journal_append(
                records
                    .iter()
                    .zip(&keys)
                    .enumerate()
                    .map(|(i, (r, k))| (i as u64 + 1, k, r)),
            )
            .unwrap();
        let mut batch = store.state_batch();
        batch.put(keys::control_outcome(1), &"outcome of 1");
        batch.put(keys::control_outcome(4), &"outcome of 4");
        // Threading's index of the thread, and the conversation's index of its messages.
        batch.put(keys::thread("api", "t"), &"conversation-1");
        for seq in 1..=5 {
            batch.put(keys::conversation_message("conversation-1", seq), &());
        }
        batch.commit().unwrap();
        let gate = WriteGate::default();
        // Records 1-3 are old enough (0, 10, 20 minutes), but only 1-2 are applied.
        let cutoff = DateTime::UNIX_EPOCH + chrono::Duration::minutes(25);
        assert_eq!(compact(&store, 2, cutoff, &gate).unwrap(), 2);
        assert_eq!(store.journal_get(1).unwrap(), None);
        assert_eq!(store.journal_lookup(&keys[1]).unwrap(), None);
        assert_eq!(store.journal_get(3).unwrap().as_ref(), Some(&records[2]));
        assert_eq!(store.journal_lookup(&keys[2]).unwrap(), Some(3));
        assert_eq!(
            store
                .state_get::<String>(&keys::control_outcome(1))
                .unwrap(),
            None
        );
        assert!(store
            .state_get::<String>(&keys::control_outcome(4))
            .unwrap()
            .is_some());
        let indexed = |seq| {
            store
                .state_get::<()>(&keys::conversation_message("conversation-1", seq))
                .unwrap()
                .is_some()
        };
        assert_eq!((indexed(1), indexed(2), indexed(3)), (false, false, true));
        // Everything applied now; 4 and 5 are younger than the cutoff.
        assert_eq!(compact(&store, 5, cutoff, &gate).unwrap(), 1);
        assert_eq!(store.journal_get(4).unwrap().as_ref(), Some(&records[3]));
        assert_eq!(compact(&store, 5, cutoff, &gate).unwrap(), 0);
        // Everything old: the newest stays, so the sequence goes on where it was.
        let later = DateTime::UNIX_EPOCH + chrono::Duration::days(1);
        assert_eq!(compact(&store, 5, later, &gate).unwrap(), 1);
        assert_eq!(store.journal_get(5).unwrap().as_ref(), Some(&records[4]));
        assert_eq!(store.journal_last_seq().unwrap(), 5);
    }

    #[test]
    fn a_key_that_names_a_newer_record_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = record("m1", 0);
        let key = DedupeKey::of(&old);
        store.journal_append([(1, &key, &old)]).unwrap();
        // The same key journaled again later (as after an earlier retention pass).
        let again = record("m1", 60);
        store.journal_append([(2, &key, &again)]).unwrap();
        store
            .journal_append([(3, &DedupeKey::of(&record("m2", 61)), &record("m2", 61))])
            .unwrap();
        let cutoff = DateTime::UNIX_EPOCH + chrono::Duration::minutes(30);
        assert_eq!(
            compact(&store, 3, cutoff, &WriteGate::default()).unwrap(),
            1
        );
        assert_eq!(store.journal_lookup(&key).unwrap(), Some(2));
    }
}
