//! Outbox retention: deletes events every sink has passed once they are older than
//! `min_age_secs` and behind the newest `min_events`.
//!
//! Readers of `GET /v1/events` have no cursor here: retention is what keeps events for them.
//! A reader whose `after` is older than the oldest kept event gets the oldest kept events; the
//! jump in `sequence` shows what it missed.

use chrono::Utc;

use crate::config::RetentionConfig;
use crate::events::sinks::OutEvent;
use crate::store::{Store, StoreError, WriteGate};

/// Events deleted per pass, so that one pass never holds a huge batch in memory.
const CHUNK: usize = 4096;

/// One compaction pass; returns how many events it deleted.
pub fn compact(
    store: &Store,
    sinks: &[String],
    config: &RetentionConfig,
    last: u64,
) -> Result<usize, StoreError> {
    compact_with(store, sinks, config, last, &WriteGate::default())
}

pub(super) fn compact_with(
    store: &Store,
    sinks: &[String],
    config: &RetentionConfig,
    last: u64,
    gate: &WriteGate,
) -> Result<usize, StoreError> {
    // Only durable cursors may decide: a cursor lost in a crash must not point past a gap.
    store.flush()?;
    let mut limit = last.saturating_sub(config.min_events);
    for sink in sinks {
        limit = limit.min(store.sink_cursor(sink)?.unwrap_or(0));
    }
    let cutoff = Utc::now() - chrono::Duration::seconds(config.min_age_secs as i64);
    let mut deleted = 0;
    loop {
        let Some(oldest) = store.outbox_oldest()? else {
            return Ok(deleted);
        };
        let candidates = store.outbox_read(oldest.saturating_sub(1), limit, CHUNK)?;
        let mut upto = None;
        for (seq, value) in &candidates {
            let event = OutEvent::parse(*seq, bytes::Bytes::copy_from_slice(value))?;
            if event.time > cutoff {
                break;
            }
            upto = Some(*seq);
        }
        let Some(upto) = upto else {
            return Ok(deleted);
        };
        let removed = {
            let _whole = gate.hold();
            store.outbox_compact(upto)?
        };
        deleted += removed;
        metrics::counter!("deskgate_outbox_compacted_total").increment(removed as u64);
        if candidates.len() < CHUNK || upto != candidates.last().map(|(s, _)| *s).unwrap_or(0) {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::events::data::EventData;
    use crate::events::{EventDraft, OutboxWriter};
    use crate::model::SinkDisabled;

    fn push_events(store: &Store, times: &[DateTime<Utc>]) {
        let writer = OutboxWriter::new("test".to_owned(), uuid::Uuid::nil());
        let mut batch = store.state_batch();
        for (i, time) in times.iter().enumerate() {
            let disabled = SinkDisabled {
                sink: "s".into(),
                event_seq: i as u64,
                event_id: format!("e{i}"),
                event_subject: format!("T{i}"),
                reason: "answered 410 Gone".into(),
                at: *time,
            };
            let data = EventData::SinkDisabled((&disabled).into());
            let draft = EventDraft::new(format!("T{i}"), None, data);
            writer.push(&mut batch, *time, &draft).unwrap();
        }
        batch.commit().unwrap();
    }

    #[test]
    fn compaction_keeps_what_a_sink_or_the_retention_still_needs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = Utc::now() - chrono::Duration::days(30);
        let mut times = vec![old; 8];
        times.extend([Utc::now(); 2]);
        push_events(&store, &times);
        let sinks = vec!["a".to_owned(), "b".to_owned()];
        store.sink_set_cursor("a", 9).unwrap();
        store.sink_set_cursor("b", 3).unwrap();
        let config = RetentionConfig {
            min_age_secs: 24 * 3600,
            min_events: 4,
            compact_interval_secs: 1,
        };
        // Sink b has only passed event 3.
        assert_eq!(compact(&store, &sinks, &config, 10).unwrap(), 3);
        assert_eq!(store.outbox_oldest().unwrap(), Some(4));
        // b catches up: the newest 4 events (7..=10) stay by count.
        store.sink_set_cursor("b", 10).unwrap();
        assert_eq!(compact(&store, &sinks, &config, 10).unwrap(), 3);
        assert_eq!(store.outbox_oldest().unwrap(), Some(7));
        // With no count to keep, the age still keeps the two recent events.
        let by_age = RetentionConfig {
            min_events: 0,
            ..config
        };
        assert_eq!(compact(&store, &sinks, &by_age, 10).unwrap(), 2);
        assert_eq!(store.outbox_oldest().unwrap(), Some(9));
        // A reader asking from before the oldest kept event gets the oldest kept events.
        let seqs: Vec<u64> = store
            .outbox_read(0, 10, 100)
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(seqs, [9, 10]);
    }

    #[test]
    fn a_sink_without_a_cursor_holds_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        push_events(&store, &[Utc::now() - chrono::Duration::days(30); 5]);
        let config = RetentionConfig {
            min_age_secs: 0,
            min_events: 0,
            compact_interval_secs: 1,
        };
        assert_eq!(compact(&store, &["new".to_owned()], &config, 5).unwrap(), 0);
        assert_eq!(compact(&store, &[], &config, 5).unwrap(), 5);
        assert_eq!(store.outbox_oldest().unwrap(), None);
    }
}
