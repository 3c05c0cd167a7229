//! A full disk under the state directory: deskgate answers 503 (never a false 2xx), reports it
//! on /readyz, and when space returns restarts itself in place to reopen the database, with
//! every acknowledged message kept exactly once. The state directory is a real 8 MiB tmpfs, so
//! this test needs root (as CI and the development machines run).

use std::collections::HashMap;
use std::time::Duration;

use test_kit::tmpfs::Tmpfs;
use test_kit::{api_message, eventually, Daemon, Tables};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("state"), "8m");
    let tables = Tables {
        state: "min_free_bytes = 1048576\n",
        ..Tables::default()
    };
    let mail = "[channels.mail]\nkind = \"email\"\nmax_body_bytes = 4194304\n";
    let mut daemon = Daemon::start_with(dir.path(), tables, mail).await;
    let filler = disk.0.join("filler");
    let room = disk.free_bytes().saturating_sub(1_500_000);
    std::fs::write(&filler, vec![0u8; room as usize]).unwrap();

    let client = reqwest::Client::new();
    let mut answers: HashMap<String, u16> = HashMap::new();
    let text = "x".repeat(600);
    let mut full = false;
    for i in 0..20_000 {
        let id = format!("m{i}");
        let response = client
            .post(daemon.url("/hooks/api"))
            .json(&api_message(
                &id,
                &format!("t{}", i / 10),
                "ana@example.com",
                &text,
            ))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        answers.insert(id, status);
        if status == 503 {
            let body = response.text().await.unwrap();
            // Said in deskgate's words: store text (files, keys) stays in the log.
            assert!(
                body.contains("the state directory's disk is full"),
                "{body}"
            );
            assert!(!body.contains("os error"), "{body}");
            full = true;
            break;
        }
        assert_eq!(status, 202);
    }
    assert!(full, "the disk never filled");
    // A pushed mail's attachment finds no room either, and says so in deskgate's words.
    let attachment = "QUJD".repeat(500_000);
    let raw = format!(
        "From: ana@example.com\r\nTo: support@example.com\r\nSubject: scan\r\n\
         Message-ID: <full@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nthe scan\r\n--b\r\n\
         Content-Type: application/octet-stream; name=scan.bin\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--b--\r\n"
    );
    let response = client
        .post(daemon.url("/hooks/mail"))
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("the state directory's disk is full"),
        "{body}"
    );
    assert!(
        !body.contains("os error") && !body.contains("blobs"),
        "{body}"
    );
    let ready = client.get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("storage_failed"));

    // Space returns: the daemon restarts itself and accepts again, on the same process id.
    let pid = daemon.pid();
    std::fs::remove_file(&filler).unwrap();
    let after = api_message("after-recovery", "t-after", "ana@example.com", "back");
    eventually(
        "inputs to be accepted again",
        Duration::from_secs(60),
        || {
            let request = client.post(daemon.url("/hooks/api")).json(&after).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        },
    )
    .await;
    assert_eq!(daemon.pid(), pid);
    assert!(daemon.log().contains("restarting to reopen it"));

    daemon.settled().await;
    let events = daemon.all_events().await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for event in events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("deskgate.ticket."))
    {
        *seen
            .entry(
                event["data"]["message"]["external_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    for (id, status) in &answers {
        if *status == 202 {
            assert_eq!(
                seen.get(id),
                Some(&1),
                "acknowledged {id} must be there once"
            );
        }
    }
    assert_eq!(seen.get("after-recovery"), Some(&1));
    assert!(seen.values().all(|&n| n == 1), "nothing twice");
    assert!(daemon.terminate().success());
}
