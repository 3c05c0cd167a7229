//! The blob sweep: deletes the blobs (attachments, quarantined raw input) that nothing can name
//! any more: older than the journal's window and than the oldest event still in the outbox,
//! and named by no record left from before the window, no quarantine entry and no outgoing
//! message still to send. Storing or attaching a blob makes it new again, so a young record
//! never names an old blob.

use chrono::{DateTime, Utc};

use super::journal::CHUNK;
use crate::model::Quarantined;
use crate::outbound::{OutgoingItem, Payload};
use crate::store::{keys, Blobs, Store, StoreError};

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
    use std::time::Duration;

    use super::*;
    use crate::model::{DedupeKey, Inbound, Record, Sender};

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
}
