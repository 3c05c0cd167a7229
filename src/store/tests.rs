use super::*;
use crate::model::{Inbound, Sender};

fn record(external_id: &str) -> Record {
    Record::Inbound(Box::new(Inbound::new(
        "api",
        external_id,
        "t",
        Sender::default(),
        "hello",
        chrono::DateTime::UNIX_EPOCH,
    )))
}

#[test]
fn journal_records_and_dedupe_keys_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.journal_last_seq().unwrap(), 0);
    let (a, b) = (record("a"), record("b"));
    let (ka, kb) = (DedupeKey::of(&a), DedupeKey::of(&b));
    store.journal_append([(1, &ka, &a), (2, &kb, &b)]).unwrap();
    assert_eq!(store.journal_last_seq().unwrap(), 2);
    assert_eq!(store.journal_lookup(&kb).unwrap(), Some(2));
    let items = store.journal_read(0, 2, 10).unwrap();
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(items[1].record.as_ref().unwrap(), &b);
    // `upto` bounds the read even when more is written.
    assert_eq!(store.journal_read(0, 1, 10).unwrap().len(), 1);
    assert!(store.journal_read(2, 2, 10).unwrap().is_empty());
}

#[test]
fn a_batch_reads_its_own_writes_and_rolls_back_to_a_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = store.state_batch();
    batch.put(b"k/1".to_vec(), &"one");
    let savepoint = batch.savepoint();
    batch.put(b"k/1".to_vec(), &"changed");
    batch.put(b"k/2".to_vec(), &"two");
    assert_eq!(batch.get::<String>(b"k/2").unwrap().as_deref(), Some("two"));
    batch.rollback_to(savepoint);
    assert_eq!(batch.get::<String>(b"k/1").unwrap().as_deref(), Some("one"));
    assert_eq!(batch.get::<String>(b"k/2").unwrap(), None);
    assert_eq!(batch.next(b"n").unwrap(), 1);
    assert_eq!(batch.next(b"n").unwrap(), 2);
    batch.commit().unwrap();
    assert_eq!(
        store.state_get::<String>(b"k/1").unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(store.state_get::<u64>(b"n").unwrap(), Some(2));
}

#[test]
fn a_batch_keeps_what_it_read_and_commits_only_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tags = vec!["billing".to_owned(), "vip".to_owned()];
    let mut batch = store.state_batch();
    batch.put(b"k/a".to_vec(), &tags);
    batch.put(b"k/c".to_vec(), &1u64);
    batch.commit().unwrap();

    let before = store.state_ops();
    let mut batch = store.state_batch();
    assert_eq!(
        batch.get::<Vec<String>>(b"k/a").unwrap(),
        Some(tags.clone())
    );
    assert_eq!(
        batch.get::<Vec<String>>(b"k/a").unwrap(),
        Some(tags.clone())
    );
    assert_eq!(
        batch.read(b"k/a", |t: &Vec<String>| t.len()).unwrap(),
        Some(2)
    );
    // Read as another type than it was decoded as: through its encoding.
    assert_eq!(
        batch.get::<serde_json::Value>(b"k/a").unwrap(),
        Some(serde_json::json!(["billing", "vip"]))
    );
    assert_eq!(batch.get::<u64>(b"k/z").unwrap(), None);
    assert!(!batch.contains(b"k/z").unwrap());
    assert!(batch.contains(b"k/c").unwrap());
    // A value read and then changed by a sub-step that fails is the committed one again.
    let savepoint = batch.savepoint();
    batch.put(b"k/a".to_vec(), &vec!["changed".to_owned()]);
    batch.put(b"k/b".to_vec(), &2u64);
    batch.rollback_to(savepoint);
    assert_eq!(
        batch.get::<Vec<String>>(b"k/a").unwrap(),
        Some(tags.clone())
    );
    assert_eq!(batch.get::<u64>(b"k/b").unwrap(), None);
    // Keys read (present or absent) list as the committed state has them.
    assert_eq!(
        batch.keys_with_prefix(b"k/").unwrap(),
        [b"k/a".to_vec(), b"k/c".to_vec()]
    );
    batch.put(b"k/b".to_vec(), &3u64);
    batch.remove(b"k/c".to_vec());
    assert!(!batch.contains(b"k/c").unwrap());
    assert_eq!(
        batch.keys_with_prefix(b"k/").unwrap(),
        [b"k/a".to_vec(), b"k/b".to_vec()]
    );
    batch.commit().unwrap();

    let ops = store.state_ops().since(&before);
    // k/a and k/c, which the batch before wrote, came from the carry once each; k/z went to
    // the engine, and k/b once its write was rolled back (the batch had not read it before);
    // k/a, read only, is not written back.
    assert_eq!((ops.engine_reads, ops.carried_reads), (2, 2), "{ops:?}");
    assert_eq!((ops.steps, ops.written), (1, 2), "{ops:?}");
    assert_eq!(store.state_get::<Vec<String>>(b"k/a").unwrap(), Some(tags));
    assert_eq!(store.state_get::<u64>(b"k/b").unwrap(), Some(3));
    assert_eq!(store.state_get::<u64>(b"k/c").unwrap(), None);
}

#[test]
fn a_value_read_as_a_partial_view_keeps_what_the_view_does_not_know() {
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct View {
        a: u64,
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = store.state_batch();
    batch.put(b"v/1".to_vec(), &serde_json::json!({ "a": 1, "b": 2 }));
    batch.commit().unwrap();

    let mut batch = store.state_batch();
    assert_eq!(batch.read(b"v/1", |v: &View| v.a).unwrap(), Some(1));
    let full = batch.get::<serde_json::Value>(b"v/1").unwrap();
    assert_eq!(full, Some(serde_json::json!({ "a": 1, "b": 2 })));
    // Bytes written raw are committed as written, even once read as a view.
    batch.put_raw(
        b"v/2".to_vec(),
        super::encode(&serde_json::json!({ "a": 3, "c": 4 })),
    );
    assert_eq!(batch.read(b"v/2", |v: &View| v.a).unwrap(), Some(3));
    batch.commit().unwrap();
    assert_eq!(
        store.state_get::<serde_json::Value>(b"v/2").unwrap(),
        Some(serde_json::json!({ "a": 3, "c": 4 }))
    );
}

/// A store holding `k/a` = 1, opened again so that nothing is carried yet.
fn reopened_with_a_value() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = store.state_batch();
    batch.put(b"k/a".to_vec(), &1u64);
    batch.commit().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn a_step_finds_what_the_steps_before_read_and_wrote_without_the_engine() {
    let (_dir, store) = reopened_with_a_value();
    let before = store.state_ops();
    let mut batch = store.state_batch();
    assert_eq!(batch.get::<u64>(b"k/a").unwrap(), Some(1));
    assert_eq!(batch.get::<u64>(b"k/z").unwrap(), None);
    batch.put(b"k/b".to_vec(), &vec!["vip".to_owned()]);
    batch.put_raw(b"k/raw".to_vec(), b"\x01\"raw\"".to_vec());
    batch.put_raw(keys::outbox(1), b"{}".to_vec());
    batch.commit().unwrap();
    let first = store.state_ops().since(&before);
    assert_eq!(
        (first.engine_reads, first.carried_reads),
        (2, 0),
        "{first:?}"
    );

    let before = store.state_ops();
    let batch = store.state_batch();
    assert_eq!(batch.get::<u64>(b"k/a").unwrap(), Some(1));
    assert_eq!(batch.get::<u64>(b"k/z").unwrap(), None);
    assert_eq!(
        batch.get::<Vec<String>>(b"k/b").unwrap(),
        Some(vec!["vip".to_owned()])
    );
    assert_eq!(
        batch.get::<String>(b"k/raw").unwrap(),
        Some("raw".to_owned())
    );
    // Events are not carried: they are written once and never read by a step.
    assert_eq!(
        batch.get_raw(&keys::outbox(1)).unwrap(),
        Some(b"{}".to_vec())
    );
    batch.commit().unwrap();
    let second = store.state_ops().since(&before);
    assert_eq!(
        (second.engine_reads, second.carried_reads),
        (1, 4),
        "{second:?}"
    );

    // What a step found in the carry and did not change stays carried for the steps after.
    let before = store.state_ops();
    let batch = store.state_batch();
    assert_eq!(batch.get::<u64>(b"k/a").unwrap(), Some(1));
    assert_eq!(
        batch.get::<String>(b"k/raw").unwrap(),
        Some("raw".to_owned())
    );
    batch.commit().unwrap();
    let third = store.state_ops().since(&before);
    assert_eq!(
        (third.engine_reads, third.carried_reads),
        (0, 2),
        "{third:?}"
    );
    // The step's event is in the outbox keyspace, where the feed reads it, not in the state's.
    assert!(store.state.get(keys::outbox(1)).unwrap().is_none());
    assert_eq!(
        store.outbox_read(0, u64::MAX, 10).unwrap()[0].1[..],
        b"{}"[..]
    );
}

#[test]
fn events_an_earlier_version_kept_in_the_state_move_to_the_outbox_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let event = |seq: u64| format!(r#"{{"id":"e{seq}"}}"#);
    {
        let store = Store::open(dir.path()).unwrap();
        // As versions before the outbox keyspace wrote them, beside the state; the first few
        // already moved, as by a start that crashed part-way through the move.
        let mut batch = store.db.batch();
        for seq in 1..=25_000u64 {
            let keyspace = if seq <= 5 {
                &store.outbox
            } else {
                &store.state
            };
            batch.insert(keyspace, keys::outbox(seq), event(seq));
        }
        batch.insert(&store.state, keys::OUTBOX_SEQ, encode(&25_000u64));
        batch.insert(&store.state, b"ticket/t1", encode(&"kept".to_owned()));
        batch.commit().unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.state.prefix(keys::outbox_prefix()).count(), 0);
    let events = store.outbox_read(0, u64::MAX, usize::MAX).unwrap();
    assert_eq!(events.len(), 25_000);
    for (i, (seq, value)) in events.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(value[..], *event(*seq).as_bytes());
    }
    assert_eq!(store.outbox_oldest().unwrap(), Some(1));
    assert_eq!(
        store.state_get::<u64>(keys::OUTBOX_SEQ).unwrap(),
        Some(25_000)
    );
    assert_eq!(
        store.state_get::<String>(b"ticket/t1").unwrap().as_deref(),
        Some("kept")
    );
}

#[test]
fn what_journal_retention_deletes_is_not_answered_from_the_carry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = store.state_batch();
    batch.put(b"k/outcome".to_vec(), &7u64);
    batch.commit().unwrap();
    let batch = store.state_batch();
    assert_eq!(batch.get::<u64>(b"k/outcome").unwrap(), Some(7));
    batch.commit().unwrap();

    store
        .journal_forget(&[], vec![b"k/outcome".to_vec()])
        .unwrap();
    let batch = store.state_batch();
    assert_eq!(batch.get::<u64>(b"k/outcome").unwrap(), None);
    assert!(!batch.contains(b"k/outcome").unwrap());
}

#[test]
fn a_value_read_before_another_batch_wrote_it_is_not_carried() {
    let (_dir, store) = reopened_with_a_value();
    // A reader reads k/a; a writer then changes it and commits; the reader commits last.
    let reader = store.state_batch();
    assert_eq!(reader.get::<u64>(b"k/a").unwrap(), Some(1));
    let mut writer = store.state_batch();
    writer.put(b"k/a".to_vec(), &2u64);
    writer.commit().unwrap();
    reader.commit().unwrap();

    let batch = store.state_batch();
    assert_eq!(batch.get::<u64>(b"k/a").unwrap(), Some(2));
}

#[test]
fn undecodable_values_are_reported_not_panicked_on() {
    assert!(matches!(
        decode::<u64>(&"k", b""),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        decode::<u64>(&"k", b"\x09{}"),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        decode::<u64>(&"k", b"\x01nope"),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(decode::<u64>(&"k", &encode(&7u64)).unwrap(), 7);
}

#[test]
fn keys_in_range_sees_the_batchs_own_writes_and_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = store.state_batch();
    for k in [b"r/1", b"r/2", b"r/3", b"r/5"] {
        batch.put(k.to_vec(), &());
    }
    batch.commit().unwrap();
    let mut batch = store.state_batch();
    batch.remove(b"r/1".to_vec());
    batch.remove(b"r/2".to_vec());
    batch.put(b"r/4".to_vec(), &());
    let keys = batch.keys_in_range(b"r/", b"r/9", 2).unwrap();
    assert_eq!(keys, [b"r/3".to_vec(), b"r/4".to_vec()]);
    let keys = batch.keys_in_range(b"r/", b"r/5", 10).unwrap();
    assert_eq!(keys, [b"r/3".to_vec(), b"r/4".to_vec()]);
}

#[test]
fn a_state_directory_whose_database_vanished_refuses_to_open_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, ka) = (record("a"), DedupeKey::of(&record("a")));
    store.journal_append([(1, &ka, &a)]).unwrap();
    store.flush().unwrap();
    drop(store);
    // What a power cut that lost the directory entry would leave.
    std::fs::remove_dir_all(dir.path().join(DB_DIR)).unwrap();
    let error = Store::open(dir.path()).err().expect("refused");
    assert!(matches!(error, StoreError::Missing(_)), "{error}");
    assert!(error.to_string().contains("refusing to start"), "{error}");
}

#[test]
fn concurrent_flushes_share_a_sync_and_every_write_is_covered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let mut batch = store.state_batch();
                    batch.put(format!("k/{t}/{i}").into_bytes(), &i);
                    batch.commit().unwrap();
                    let mine = store.syncs.written.load(Ordering::Acquire);
                    store.flush().unwrap();
                    let synced = store.syncs.synced.load(Ordering::Acquire);
                    assert!(synced >= mine, "this thread's write is covered by a sync");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let written = store.syncs.written.load(Ordering::Acquire);
    assert!(written >= 200);
    store.flush().unwrap();
    assert_eq!(store.syncs.synced.load(Ordering::Acquire), written);
}

#[test]
fn a_batch_counts_its_effects_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        // A sub-step rolled back, and a whole batch dropped (a step that failed and will be
        // retried), count nothing.
        let mut batch = store.state_batch();
        let savepoint = batch.savepoint();
        batch.count("effects_total", &[("kind", "rolled_back")], 1);
        batch.rollback_to(savepoint);
        batch.count("effects_total", &[("kind", "kept")], 2);
        let mut failed = store.state_batch();
        failed.count("effects_total", &[("kind", "dropped")], 1);
        drop(failed);
        assert!(!handle.render().contains("effects_total"), "counted early");
        batch.commit().unwrap();
    });
    let text = handle.render();
    assert!(text.contains("effects_total{kind=\"kept\"} 2"), "{text}");
    assert!(!text.contains("rolled_back"), "{text}");
    assert!(!text.contains("dropped"), "{text}");
}

#[test]
fn may_hold_range_never_misses_a_key_the_batch_would_leave() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut setup = store.state_batch();
    setup.put(b"c/5".to_vec(), &());
    setup.put(b"d/1".to_vec(), &());
    setup.commit().unwrap();

    let mut batch = store.state_batch();
    assert!(
        !batch.may_hold_range(b"c/", b"c/5").unwrap(),
        "c/5 is the end"
    );
    assert!(batch.may_hold_range(b"c/", b"c/6").unwrap());
    // Asked again after the batch's own writes: they count, committed or not.
    batch.put(b"c/2".to_vec(), &());
    assert!(batch.may_hold_range(b"c/", b"c/3").unwrap());
    batch.remove(b"c/2".to_vec());
    assert!(!batch.may_hold_range(b"c/", b"c/3").unwrap());
    // Nothing after the prefix's keys is mistaken for one of them.
    assert!(!batch.may_hold_range(b"b/", b"b/9").unwrap());
    assert_eq!(
        batch.keys_in_range(b"c/", b"c/6", 10).unwrap(),
        [b"c/5".to_vec()]
    );
}

#[test]
fn a_step_behind_a_sealed_one_reads_its_writes_before_they_land() {
    let (_dir, store) = reopened_with_a_value();
    let mut first = store.state_batch();
    first.put(b"k/b".to_vec(), &2u64);
    first.put_raw(b"k/raw".to_vec(), b"\x01\"raw\"".to_vec());
    first.remove(b"k/a".to_vec());
    let (sealed, seed) = first.seal();

    // Not landed: the engine has none of it, and the step behind sees all of it.
    let mut second = store.state_batch_after(seed);
    assert_eq!(store.state_get::<u64>(b"k/b").unwrap(), None);
    assert_eq!(store.state_get::<u64>(b"k/a").unwrap(), Some(1));
    assert_eq!(second.get::<u64>(b"k/b").unwrap(), Some(2));
    assert_eq!(
        second.get::<String>(b"k/raw").unwrap().as_deref(),
        Some("raw")
    );
    assert!(!second.contains(b"k/a").unwrap());
    let listed = [b"k/b".to_vec(), b"k/raw".to_vec()];
    assert_eq!(second.keys_with_prefix(b"k/").unwrap(), listed);
    assert_eq!(second.keys_in_range(b"k/", b"k0", 10).unwrap(), listed);
    second.put(b"k/b".to_vec(), &3u64);
    let (later, _) = second.seal();

    let generation = sealed.land(&store, None).unwrap();
    later.land(&store, Some(generation)).unwrap();
    assert_eq!(store.state_get::<u64>(b"k/b").unwrap(), Some(3));
    assert_eq!(store.state_get::<u64>(b"k/a").unwrap(), None);
    assert_eq!(
        store.state_get::<String>(b"k/raw").unwrap().as_deref(),
        Some("raw")
    );
}

#[test]
fn a_step_behind_a_landing_one_carries_what_it_read() {
    let (_dir, store) = reopened_with_a_value();
    let mut first = store.state_batch();
    first.put(b"k/b".to_vec(), &2u64);
    let (sealed, seed) = first.seal();
    // Read from the engine while the step before is in flight, which then lands first.
    let second = store.state_batch_after(seed);
    assert_eq!(second.get::<u64>(b"k/a").unwrap(), Some(1));
    let (later, _) = second.seal();
    let generation = sealed.land(&store, None).unwrap();
    later.land(&store, Some(generation)).unwrap();

    let before = store.state_ops();
    let third = store.state_batch();
    assert_eq!(third.get::<u64>(b"k/a").unwrap(), Some(1));
    assert_eq!(third.get::<u64>(b"k/b").unwrap(), Some(2));
    third.commit().unwrap();
    let ops = store.state_ops().since(&before);
    assert_eq!((ops.engine_reads, ops.carried_reads), (0, 2), "{ops:?}");
}
