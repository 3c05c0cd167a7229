//! `deskgate backup` while messages are being posted: a second daemon started on the copy has
//! a consistent prefix of the first one's history.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{control_get, post_raw, TOKEN};
use test_kit::{api_message, daemon_bin, eventually, Daemon};

const MAIL_WITH_FILE: &str = "From: Ana <ana@example.com>\r\nTo: support@acme.test\r\n\
Subject: With a file\r\nMessage-ID: <file-1@example.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
See attached.\r\n--b1\r\nContent-Type: application/octet-stream; name=\"notes.bin\"\r\n\
Content-Disposition: attachment; filename=\"notes.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
aGVsbG8gYmFja3Vw\r\n--b1--\r\n";

/// When each message was acknowledged; `None` while it never was.
type Acks = Arc<Mutex<BTreeMap<String, Option<Instant>>>>;

/// Posts messages on new threads until `stop`, retrying each until it is acknowledged.
async fn post_until(daemon_url: String, poster: usize, acks: Acks, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    for i in 0..3000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("p{poster}-{i}");
        acks.lock().unwrap().insert(id.clone(), None);
        let message = api_message(&id, &format!("t-{id}"), "ana@example.com", "hi");
        loop {
            let sent = client.post(&daemon_url).json(&message).send().await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                acks.lock()
                    .unwrap()
                    .insert(id.clone(), Some(Instant::now()));
                break;
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// External id → how many message events name it.
fn message_counts(events: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in events {
        if let Some(id) = event["data"]["message"]["external_id"].as_str() {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn a_backup_taken_under_load_starts_as_a_consistent_prefix() {
    let (live_dir, copy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let extra = |dir: &std::path::Path| {
        format!(
            "{}[channels.mail]\nkind = \"email\"\n",
            super::token_config(dir)
        )
    };
    let mut live = Daemon::start(live_dir.path(), &extra(live_dir.path())).await;
    let client = reqwest::Client::new();
    let mail = MAIL_WITH_FILE.to_owned();
    assert_eq!(
        post_raw(&live, "/hooks/mail", "message/rfc822", mail).await,
        202
    );

    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let posters: Vec<_> = (0..4)
        .map(|poster| {
            let url = live.url("/hooks/api");
            tokio::spawn(post_until(url, poster, acks.clone(), stop.clone()))
        })
        .collect();
    eventually(
        "messages to be acknowledged",
        Duration::from_secs(30),
        || async { acks.lock().unwrap().values().flatten().count() >= 300 },
    )
    .await;

    let dest = copy_dir.path().join("state");
    let started = Instant::now();
    let (url, token_file) = (live.url(""), live_dir.path().join("control.token"));
    let backup_dest = dest.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(daemon_bin())
            .arg("backup")
            .arg(&backup_dest)
            .args(["--url", &url])
            .arg("--token-file")
            .arg(&token_file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let finished = Instant::now();
    // Posting went on during the backup; now it stops.
    stop.store(true, Ordering::Relaxed);
    for poster in posters {
        poster.await.unwrap();
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let progress_line = stdout
        .lines()
        .find(|l| l.starts_with("backup: ") && l.ends_with(" keys"))
        .unwrap_or_else(|| panic!("no progress line in {stdout}"));
    let (copied, estimated) = progress_line["backup: ".len()..progress_line.len() - 5]
        .split_once('/')
        .unwrap();
    assert!(copied.parse::<u64>().unwrap() > 300, "{progress_line}");
    assert!(estimated.parse::<u64>().unwrap() > 300, "{progress_line}");
    assert!(
        stdout.contains("backup: done: ") && stdout.contains(" MiB ("),
        "{stdout}"
    );
    assert!(
        live.log().contains("backup: done"),
        "the daemon logs it too"
    );

    let report = control_get(&live, "/v1/control/backup").await;
    assert_eq!(report["status"], "done", "{report}");
    let (journal_seq, cursor) = (
        report["journal_seq"].as_u64().unwrap(),
        report["processor_cursor"].as_u64().unwrap(),
    );
    assert!(cursor <= journal_seq, "{report}");
    let acks = acks.lock().unwrap().clone();
    let acked_before: Vec<&String> = acks
        .iter()
        .filter(|(_, at)| at.is_some_and(|at| at < started))
        .map(|(id, _)| id)
        .collect();
    assert!(acked_before.len() >= 300);
    let acked_during = acks
        .values()
        .filter(|at| at.is_some_and(|at| at >= started && at <= finished))
        .count();
    assert!(
        acked_during > 0,
        "messages were acknowledged while the backup ran"
    );
    live.settled().await;
    let live_events = live.all_events().await;
    assert!(live.terminate().success());

    // A daemon on the copy (same config, new port) applies what the copy journaled after its
    // cursor, producing exactly the events the first one produced for them.
    let copy = Daemon::start(copy_dir.path(), &extra(copy_dir.path())).await;
    copy.settled().await;
    if cursor < journal_seq {
        let records = journal_seq - cursor;
        let log = copy.log();
        assert!(
            log.contains(&format!("replay: {records} journal records")),
            "{log}"
        );
        assert!(
            log.contains(&format!("replay: done, {records} records")),
            "{log}"
        );
    }
    let copied = copy.all_events().await;
    assert!(!copied.is_empty());
    assert_eq!(
        copied[..],
        live_events[..copied.len()],
        "the copy's history is a prefix of the original's"
    );
    let counts = message_counts(&copied);
    for id in &acked_before {
        assert_eq!(
            counts.get(id.as_str()),
            Some(&1),
            "{id} acknowledged before the backup"
        );
    }
    let file = copied
        .iter()
        .find_map(|e| e["data"]["message"]["attachments"][0]["id"].as_str())
        .expect("the mail's attachment");
    let blob = client
        .get(copy.url(&format!("/v1/control/attachments/{file}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.bytes().await.unwrap().as_ref(), b"hello backup");

    // No deduplication key without its record: everything ever posted, sent again, is a
    // duplicate exactly when the copy has its message, and new otherwise.
    for id in acks.keys() {
        let message = api_message(id, &format!("t-{id}"), "ana@example.com", "hi");
        let response = client
            .post(copy.url("/hooks/api"))
            .json(&message)
            .send()
            .await
            .unwrap();
        let duplicate = response.status() == 200;
        assert!(
            duplicate || response.status() == 202,
            "{}",
            response.status()
        );
        assert_eq!(duplicate, counts.contains_key(id.as_str()), "{id}");
    }
    copy.settled().await;
    let counts = message_counts(&copy.all_events().await);
    for id in acks.keys() {
        assert_eq!(counts.get(id.as_str()), Some(&1), "{id} exactly once");
    }
}
