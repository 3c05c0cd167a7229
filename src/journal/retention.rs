//! Journal retention: deletes records the processor applied more than `journal.retention_secs`
//! ago, with their deduplication keys and what the state keys about each of them (a control
//! or outbound request's outcome, a message's entry in its conversation's index), so that the
//! journal holds a bounded window of recent input instead of everything ever received.
//!
//! Only records at or before the processor's published cursor go (that position is flushed),
//! oldest first, stopping at the first younger record: the journal is in arrival order. The
//! newest record always stays, because the journal writer takes its next sequence number
//! from it at start-up. A
//! record that no longer decodes is left where it is (its key cannot be named) and passed
//! over. Deleting the state outcomes holds the write gate, as every other state writer does.
//!
//! Each pass then sweeps the blobs (attachments, quarantined raw input) that nothing can name
//! any more ([`sweep_blobs`]): older than the journal's window and than the oldest event still
//! in the outbox, and named by no record left from before the window, no quarantine entry and
//! no outgoing message still to send. Storing or attaching a blob makes it new again, so a
//! young record never names an old blob.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::JournalConfig;
use crate::model::{DedupeKey, Record};
use crate::model::{Position, Quarantined};
use crate::outbound::{OutgoingItem, Payload};
use crate::store::{keys, Blobs, Store, StoreError, WriteGate};

/// Records looked at and deleted per batch.
const CHUNK: usize = 2048;

/// Runs a retention pass every `compact_interval_secs` until shutdown.
pub async fn run(
    (store, blobs): (Store, Blobs),
    visible: watch::Receiver<Position>,
    config: JournalConfig,
    gate: WriteGate,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_secs(config.compact_interval_secs);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        let cursor = visible.borrow().cursor;
        let cutoff = Utc::now() - chrono::Duration::seconds(config.retention_secs as i64);
        let (store, blobs, gate) = (store.clone(), blobs.clone(), gate.clone());
        let pass = tokio::task::spawn_blocking(move || {
            let compacted = compact(&store, cursor, cutoff, &gate);
            (compacted, sweep_blobs(&store, &blobs, cutoff))
        });
        let (compacted, swept) = match pass.await {
            Ok(results) => results,
            Err(error) => {
                tracing::error!(%error, "journal compaction panicked");
                continue;
            }
        };
        match compacted {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "journal compacted"),
            Err(error) => tracing::error!(%error, "journal compaction failed"),
        }
        match swept {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "blobs nothing names any more deleted"),
            Err(error) => tracing::error!(%error, "blob sweep failed"),
        }
    }
}

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

/// How much younger than the window a blob must be to be left alone although nothing names
/// it: the moment between a channel storing a blob and journaling the record that names it.
const BLOB_MARGIN_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("blobs: {0}")]
    Io(#[from] std::io::Error),
}

/// Deletes the blobs written before the journal's window (`cutoff`) and before the oldest
/// event in the outbox that nothing left names. Returns how many it deleted.
pub fn sweep_blobs(
    store: &Store,
    blobs: &Blobs,
    cutoff: DateTime<Utc>,
) -> Result<usize, SweepError> {
    let mut before = cutoff;
    if let Some((_, event)) = store.outbox_read(0, u64::MAX, 1)?.into_iter().next() {
        let time = serde_json::from_slice::<serde_json::Value>(&event)
            .ok()
            .and_then(|event| event["time"].as_str()?.parse::<DateTime<Utc>>().ok());
        // An event whose time cannot be read might name any blob: sweep nothing.
        let Some(time) = time else { return Ok(0) };
        before = before.min(time);
    }
    let before = before - chrono::Duration::seconds(BLOB_MARGIN_SECS);
    let candidates = blobs.written_before(before.into())?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let named = named_blobs(store, cutoff)?;
    let mut deleted = 0;
    for id in candidates.iter().filter(|id| !named.contains(id.as_str())) {
        blobs.delete(id)?;
        deleted += 1;
    }
    metrics::counter!("deskgate_blobs_deleted_total").increment(deleted as u64);
    Ok(deleted)
}

/// Blobs that something kept from before `cutoff` still names: records the retention could not
/// delete yet (not applied, the newest), quarantine entries, outgoing messages still to send.
fn named_blobs(
    store: &Store,
    cutoff: DateTime<Utc>,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut named = std::collections::HashSet::new();
    let mut after = 0;
    'journal: loop {
        let items = store.journal_read(after, u64::MAX, CHUNK)?;
        for item in &items {
            match &item.record {
                Ok(record) if record.accepted_at() > cutoff => break 'journal,
                Ok(record) => named.extend(record.blob_ids().into_iter().map(str::to_owned)),
                // Nothing can apply it, so nothing will read what it names.
                Err(_) => {}
            }
        }
        match items.last() {
            Some(last) if items.len() == CHUNK => after = last.seq,
            _ => break,
        }
    }
    // Quarantine entries and pending mail are few: one scan each.
    let quarantined = store.state_scan::<Quarantined>(keys::QUARANTINE, None, usize::MAX)?;
    named.extend(
        quarantined
            .into_iter()
            .filter_map(|(_, entry)| entry.raw_blob),
    );
    for (_, item_id) in store.state_scan::<String>(keys::OUTGOING_PENDING, None, usize::MAX)? {
        if let Some(item) = store.state_get::<OutgoingItem>(&keys::outgoing(&item_id))? {
            if let Payload::Email(mail) = item.payload {
                named.extend(mail.attachments.into_iter().map(|a| a.id));
            }
        }
    }
    Ok(named)
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
    fn blobs_go_once_nothing_names_them_and_they_are_older_than_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let now = Utc::now();
        let [unnamed, quarantined, in_old_record, young, stored_again] =
            ["unnamed", "quarantined", "old record", "young", "again"]
                .map(|content| blobs.put(content.as_bytes()).unwrap());
        let age = |id: &str, hours: u64| {
            let file = std::fs::File::options()
                .append(true)
                .open(dir.path().join("blobs").join(id))
                .unwrap();
            let when = std::time::SystemTime::now() - Duration::from_secs(hours * 3600);
            file.set_modified(when).unwrap();
        };
        for id in [&unnamed, &quarantined, &in_old_record, &stored_again] {
            age(id, 3);
        }
        // A record from before the window that retention could not delete yet (not applied).
        let mut old = Inbound::new(
            "form",
            "s1",
            "t",
            Sender::default(),
            "hi",
            now - chrono::Duration::hours(3),
        );
        old.attachments.push(crate::model::Attachment {
            id: in_old_record.clone(),
            name: None,
            content_type: "text/plain".into(),
            size: 10,
        });
        let old = Record::Inbound(Box::new(old));
        store
            .journal_append([(1, &DedupeKey::of(&old), &old)])
            .unwrap();
        let mut batch = store.state_batch();
        batch.put(
            keys::quarantine(7),
            &Quarantined {
                journal_seq: 7,
                channel: Some("mail".into()),
                external_id: None,
                reason: "unparseable".into(),
                raw_blob: Some(quarantined.clone()),
                at: now - chrono::Duration::hours(3),
                retried_as: None,
            },
        );
        batch.commit().unwrap();
        // The same content arriving again is new again.
        assert_eq!(blobs.put(b"again").unwrap(), stored_again);

        let cutoff = now - chrono::Duration::hours(1);
        assert_eq!(sweep_blobs(&store, &blobs, cutoff).unwrap(), 1);
        let kept = |id: &str| blobs.get(id).unwrap().is_some();
        assert!(!kept(&unnamed));
        assert!(kept(&quarantined) && kept(&in_old_record) && kept(&young) && kept(&stored_again));

        // An event still in the outbox from before a blob was written keeps it: a sink behind
        // may yet deliver an event naming it.
        age(&young, 4);
        let mut batch = store.state_batch();
        let event = serde_json::json!({ "time": now - chrono::Duration::hours(5) });
        batch.put_raw(keys::outbox(1), serde_json::to_vec(&event).unwrap());
        batch.commit().unwrap();
        assert_eq!(sweep_blobs(&store, &blobs, cutoff).unwrap(), 0);
        assert!(kept(&young));
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
