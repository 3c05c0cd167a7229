//! The spine's crash test: concurrent clients post thousands of messages while the real
//! daemon is killed with SIGKILL at random moments and restarted. At the end, every message
//! that got a 2xx produced exactly one ticket event, nothing was invented, no event id repeats,
//! sequence numbers have no gap, and every event a reader saw while the daemon was being killed
//! is still there, unchanged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use test_kit::{api_message, Daemon};

const CLIENTS: usize = 16;
const PER_CLIENT: usize = 250;
const KILLS: usize = 5;

#[derive(Default)]
struct Ledger {
    /// Every external id a client ever tried to send.
    attempted: HashSet<String>,
    /// External ids that got a 2xx.
    acked: HashSet<String>,
    /// Resends answered as duplicates: the first try was journaled but its answer was lost.
    duplicate_answers: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), "[journal]\nmax_batch = 256\n").await;
    let base = daemon.url("");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (client, base, ledger, acked_count) = (
            client.clone(),
            base.clone(),
            ledger.clone(),
            acked_count.clone(),
        );
        clients.push(tokio::spawn(async move {
            for n in 0..PER_CLIENT {
                let external_id = format!("c{c}-m{n}");
                let body = api_message(
                    &external_id,
                    &format!("c{c}-t{}", n / 5),
                    &format!("user{c}-{}@example.com", n % 7),
                    "hi",
                );
                ledger.lock().unwrap().attempted.insert(external_id.clone());
                // Retry until acknowledged, as a real integration would.
                loop {
                    let sent = client
                        .post(format!("{base}/hooks/api"))
                        .json(&body)
                        .send()
                        .await;
                    if let Some(response) = sent.as_ref().ok().filter(|r| r.status().is_success()) {
                        let mut ledger = ledger.lock().unwrap();
                        ledger.acked.insert(external_id.clone());
                        ledger.duplicate_answers += usize::from(response.status() == 200);
                        acked_count.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if let Ok(response) = sent {
                        // A 503 (journal closing, or busy) is fine to retry; anything else is not.
                        let status = response.status();
                        assert!(
                            status.is_server_error(),
                            "unexpected {status} for {external_id}"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }));
    }

    // A reader follows the outbox through the kills; what it saw must survive them.
    let seen_live: Arc<Mutex<BTreeMap<u64, Value>>> = Arc::default();
    let reader = {
        let (client, base, seen_live, done) = (
            client.clone(),
            base.clone(),
            seen_live.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            let mut after = 0u64;
            while !done.load(Ordering::Relaxed) {
                let page = client
                    .get(format!("{base}/v1/events?after={after}&limit=500&wait=1"))
                    .send()
                    .await;
                let Ok(page) = page else {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    continue;
                };
                let Ok(page) = page.json::<Value>().await else {
                    continue;
                };
                for event in page["events"].as_array().unwrap() {
                    let seq: u64 = event["sequence"].as_str().unwrap().parse().unwrap();
                    assert_eq!(seq, after + 1, "the reader's cursor skipped an event");
                    after = seq;
                    seen_live.lock().unwrap().insert(seq, event.clone());
                }
            }
        })
    };

    // Kill at random points spread over the run, while clients are sending.
    let total = CLIENTS * PER_CLIENT;
    let mut rng = rand::thread_rng();
    for k in 0..KILLS {
        let threshold = total * (k + 1) / (KILLS + 2) + rng.gen_range(0..total / (KILLS * 4));
        while acked_count.load(Ordering::Relaxed) < threshold {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..50))).await;
        daemon.kill();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..200))).await;
        daemon.restart().await;
    }
    for client in clients {
        client.await.unwrap();
    }
    daemon.settled().await;
    done.store(true, Ordering::Relaxed);
    reader.await.unwrap();

    let events = daemon.all_events().await;
    let ledger = ledger.lock().unwrap();
    assert_eq!(
        ledger.acked.len(),
        total,
        "every message was eventually acknowledged"
    );

    // Sequence numbers run 1..=N without a gap, and ids are unique.
    let mut ids = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        let seq: u64 = event["sequence"].as_str().unwrap().parse().unwrap();
        assert_eq!(seq, i as u64 + 1, "sequence gap or reorder");
        assert!(
            ids.insert(event["id"].as_str().unwrap().to_owned()),
            "event id repeated: {event}"
        );
    }
    // What the reader saw during the kills is exactly what is there now.
    for (seq, event) in seen_live.lock().unwrap().iter() {
        assert_eq!(
            &events[*seq as usize - 1],
            event,
            "event {seq} changed or vanished after a kill"
        );
    }

    // One ticket event per acknowledged message; none for anything never sent.
    let mut per_message: HashMap<String, usize> = HashMap::new();
    let mut ticket_of_thread: HashMap<String, String> = HashMap::new();
    let mut created_per_thread: HashMap<String, usize> = HashMap::new();
    let mut contacts_created = HashSet::new();
    for event in &events {
        match event["type"].as_str().unwrap() {
            kind @ ("deskgate.ticket.created" | "deskgate.ticket.message_added") => {
                let message = &event["data"]["message"];
                let external_id = message["external_id"].as_str().unwrap().to_owned();
                assert!(
                    ledger.attempted.contains(&external_id),
                    "invented message {external_id}"
                );
                *per_message.entry(external_id).or_default() += 1;
                let thread = event["data"]["conversation"]["thread_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let ticket = event["subject"].as_str().unwrap().to_owned();
                if kind == "deskgate.ticket.created" {
                    *created_per_thread.entry(thread.clone()).or_default() += 1;
                }
                let first = ticket_of_thread
                    .entry(thread)
                    .or_insert_with(|| ticket.clone());
                assert_eq!(first, &ticket, "a thread's messages went to two tickets");
            }
            "deskgate.contact.created" => {
                let email = event["data"]["contact"]["identities"][0]["address"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(
                    contacts_created.insert(email.clone()),
                    "contact {email} created twice"
                );
            }
            other => panic!("unexpected event type {other}"),
        }
    }
    let lost = ledger
        .acked
        .iter()
        .filter(|id| !per_message.contains_key(*id))
        .count();
    let duplicated = per_message.values().filter(|&&n| n > 1).count();
    println!(
        "crash: messages={total} acked={} events={} kills={KILLS} resends_answered_duplicate={} lost={lost} duplicated={duplicated}",
        ledger.acked.len(),
        events.len(),
        ledger.duplicate_answers
    );
    assert_eq!(lost, 0, "acknowledged messages lost");
    assert_eq!(duplicated, 0, "messages applied twice");
    assert!(
        created_per_thread.values().all(|&n| n == 1),
        "a thread opened two tickets"
    );
    assert_eq!(contacts_created.len(), CLIENTS * 7);
}
