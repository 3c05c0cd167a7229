use chrono::{DateTime, Utc};

use super::retention::compact;
use super::webhook::sign;
use super::*;
use crate::events::data::{EventData, TicketDeleted};
use crate::events::{EventDraft, OutboxWriter};

#[test]
fn nats_subjects_put_the_ticket_in_one_token() {
    use super::nats::nats_subject;
    assert_eq!(
        nats_subject("deskgate.events", "6f1c-7a", "deskgate.ticket.created"),
        "deskgate.events.6f1c-7a.ticket.created"
    );
    assert_eq!(
        nats_subject("p", "journal/7 a.b*>", "deskgate.inbound.quarantined"),
        "p.journal/7_a_b__.inbound.quarantined"
    );
    assert_eq!(nats_subject("p", "", "other.kind"), "p._.other.kind");
}

#[test]
fn retry_after_takes_seconds_and_http_dates() {
    use super::webhook::parse_retry_after;
    use std::time::{Duration, SystemTime};
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
        Some(Duration::from_secs(30))
    );
    // Already past: retry on the schedule.
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
}

#[test]
fn signatures_match_the_standard_webhooks_example() {
    // The example from the Standard Webhooks specification's reference libraries.
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let signature = sign(
        &[key.clone(), b"another secret of some length".to_vec()],
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    let mut parts = signature.split(' ');
    assert_eq!(
        parts.next(),
        Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    );
    assert!(parts.next().unwrap().starts_with("v1,"));
    assert_eq!(parts.next(), None);
}

fn push_events(store: &Store, times: &[DateTime<Utc>]) {
    let writer = OutboxWriter::new("test".to_owned(), uuid::Uuid::nil());
    let mut batch = store.state_batch();
    for (i, time) in times.iter().enumerate() {
        let data = EventData::TicketDeleted(TicketDeleted {
            ticket: format!("T{i}"),
            ticket_number: 0,
            conversations: Vec::new(),
        });
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
