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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_unique_seqs_and_duplicates_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (journal, writer) = start(store.clone(), &JournalConfig::default()).unwrap();
    // 200 appends of 100 distinct ids, all in flight at once: the same id in one group commit
    // must be caught as well as one already on disk.
    let appends = (0..200).map(|i| {
        let journal = journal.clone();
        async move {
            (
                i % 100,
                journal
                    .append(record(&format!("m{}", i % 100)))
                    .await
                    .unwrap(),
            )
        }
    });
    let results = futures::future::join_all(appends).await;
    let mut seq_of = std::collections::HashMap::new();
    let mut new = 0;
    for (id, appended) in &results {
        let seq = match appended {
            Appended::New { seq } => {
                new += 1;
                *seq
            }
            Appended::Duplicate { seq } => *seq,
        };
        assert_eq!(
            *seq_of.entry(*id).or_insert(seq),
            seq,
            "one seq per external id"
        );
    }
    assert_eq!(new, 100);
    assert_eq!(*journal.durable().borrow(), 100);
    assert_eq!(
        journal.append(record("m5")).await.unwrap(),
        Appended::Duplicate { seq: seq_of[&5] }
    );
    drop(journal);
    writer.join().unwrap();

    // A restart continues the sequence.
    let (journal, _writer) = start(store, &JournalConfig::default()).unwrap();
    assert_eq!(
        journal.append(record("new")).await.unwrap(),
        Appended::New { seq: 101 }
    );
}

#[tokio::test]
async fn a_record_is_a_duplicate_of_one_under_its_earlier_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (journal, _writer) = start(store, &JournalConfig::default()).unwrap();
    let with_earlier = |id: &str, earlier: &str| {
        let Record::Inbound(mut inbound) = record(id) else {
            unreachable!("record() makes an inbound message")
        };
        inbound.earlier_external_ids = vec![earlier.to_owned()];
        Record::Inbound(inbound)
    };
    let first = journal.append(record("w1")).await.unwrap();
    assert_eq!(first, Appended::New { seq: 1 });
    // Journaled before: a duplicate of it, and its own key is not taken.
    assert_eq!(
        journal.append(with_earlier("w2", "w1")).await.unwrap(),
        Appended::Duplicate { seq: 1 }
    );
    assert_eq!(
        journal.append(record("w2")).await.unwrap(),
        Appended::New { seq: 2 }
    );
    // In flight together with its twin (often in the same group commit).
    let (a, b) = futures::future::join(
        journal.append(record("v1")),
        journal.append(with_earlier("v2", "v1")),
    )
    .await;
    assert_eq!(
        (a.unwrap(), b.unwrap()),
        (Appended::New { seq: 3 }, Appended::Duplicate { seq: 3 })
    );
    assert_eq!(
        journal.append(with_earlier("u2", "u1")).await.unwrap(),
        Appended::New { seq: 4 },
        "an earlier key nobody holds changes nothing"
    );
}

#[tokio::test]
async fn a_full_queue_answers_busy_instead_of_waiting_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // No writer thread: hold the receiving end ourselves so the queue stays full.
    let (queue, _receiver) = mpsc::channel(1);
    let (_durable_tx, durable) = watch::channel(0);
    let journal = JournalHandle {
        queue,
        enqueue_timeout: Duration::from_millis(20),
        ack_timeout: Duration::from_millis(20),
        durable,
        max_batch: 1,
    };
    drop(store);
    // The first append takes the only slot and then times out waiting for its flush.
    assert!(matches!(
        journal.append(record("a")).await,
        Err(JournalError::Timeout)
    ));
    assert!(matches!(
        journal.append(record("b")).await,
        Err(JournalError::Busy)
    ));
}
