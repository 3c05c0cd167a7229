//! End-to-end: raw mail pushed to a running daemon's `/hooks/{id}` (as an MTA pipe does),
//! threaded by Message-ID, bounces of deskgate's own mail, attachments over the control API,
//! and quarantine listing and retry through the `deskgate quarantine` command.

use std::path::Path;
use std::process::Command;

use deskgate::message_id::outbound_message_id;
use serde_json::Value;
use test_kit::{daemon_bin, Daemon};

const TOKEN: &str = "mail-control-token-0123456789";

fn chatwoot(name: &str) -> Vec<u8> {
    let path = test_kit::corpus()
        .join("email/chatwoot/spec/fixtures/files")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("corpus file {}: {e}", path.display()))
}

fn config(dir: &Path, max_message_bytes: u64) -> String {
    let token_file = dir.join("control.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    format!(
        "[control]\ntoken_files = [\"{}\"]\n\n[channels.mail]\nkind = \"email\"\n\
         max_body_bytes = 2097152\n\n[channels.mail.email]\nmax_message_bytes = {max_message_bytes}\n",
        token_file.display()
    )
}

async fn push(daemon: &Daemon, content_type: &str, raw: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(daemon.url("/hooks/mail"))
        .header("content-type", content_type)
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The ticket event for the message with this external id (Message-ID).
fn ticket_event<'a>(events: &'a [Value], message_id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["data"]["message"]["external_id"] == message_id)
        .unwrap_or_else(|| panic!("no event for {message_id}"))
}

fn cli(daemon: &Daemon, args: &[&str]) -> (bool, Value, String) {
    let token_file = daemon.dir.join("control.token");
    let output = Command::new(daemon_bin())
        .arg("quarantine")
        .args(args)
        .args(["--url", &daemon.url(""), "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), json, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_mail_threads_by_message_id_and_bounces_find_their_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &config(dir.path(), 1_000_000)).await;

    // A first mail, then a real reply to it (In-Reply-To names the first's Message-ID).
    let (status, body) = push(&daemon, "message/rfc822", chatwoot("reply_to.eml")).await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = push(&daemon, "text/plain", chatwoot("in_reply_to.eml")).await;
    assert_eq!(status, 202);
    // Unrelated: names nothing deskgate has seen.
    let (status, _) = push(
        &daemon,
        "application/octet-stream",
        chatwoot("only_text.eml"),
    )
    .await;
    assert_eq!(status, 202);
    // The same mail again (an MTA retry) is acknowledged as a duplicate.
    let (status, body) = push(&daemon, "message/rfc822", chatwoot("reply_to.eml")).await;
    assert_eq!((status, &body["duplicate"]), (200, &Value::Bool(true)));
    daemon.settled().await;
    let events = daemon.all_events().await;
    let first = ticket_event(&events, "0CB459E0-0336-41DA-BC88-E6E28C697DDB@chatwoot.com");
    assert_eq!(first["type"], "deskgate.ticket.created");
    let reply = ticket_event(
        &events,
        "0CB459E0-0336-41DA-BC88-E6E28C697DDBF@chatwoot.com",
    );
    assert_eq!(reply["type"], "deskgate.ticket.message_added", "{reply}");
    assert_eq!(reply["subject"], first["subject"], "same ticket");
    let unrelated = ticket_event(
        &events,
        "6215e5ca3e3b2_10bc6197e4224d1@tejaswinis-MacBook-Pro.local.mail",
    );
    assert_eq!(unrelated["type"], "deskgate.ticket.created");
    assert_ne!(unrelated["subject"], first["subject"]);

    // A real Gmail bounce, returned for a mail deskgate sent on the first conversation.
    let conversation = first["data"]["conversation"]["id"].as_str().unwrap();
    let ours = outbound_message_id(conversation, 1, "desk.example.com");
    let bounce = String::from_utf8_lossy(&chatwoot("bounced_gmail.eml")).replace(
        "conversation/93775311-9416-4428-964b-862001f8a8b2/messages/27855337@gmail.com",
        &ours,
    );
    let (status, _) = push(&daemon, "message/rfc822", bounce.into_bytes()).await;
    assert_eq!(status, 202);
    daemon.settled().await;
    let events = daemon.all_events().await;
    let bounced = ticket_event(&events, "686707c9.050a0220.302e7d.0cb2.GMR@mx.google.com");
    assert_eq!(
        bounced["type"], "deskgate.ticket.message_added",
        "{bounced}"
    );
    assert_eq!(bounced["data"]["conversation"]["id"], conversation);
    let flags = &bounced["data"]["message"]["flags"];
    assert_eq!(flags["automatic"], true);
    assert_eq!(flags["bounce"]["message_id"], ours.as_str());
    assert_eq!(
        flags["bounce"]["recipient"], "alex.jones@fictionalcorp.com",
        "{flags}"
    );

    // A client that sends only References (oldest first, some unknown) threads by them too.
    let by_references = "From: Sony Mathew <sony@chatwoot.com>\r\nSubject: Re: Discussion\r\n\
         Message-ID: <by-references@chatwoot.com>\r\n\
         References: <0CB459E0-0336-41DA-BC88-E6E28C697DDB@chatwoot.com> <unknown-1@elsewhere.example>\r\n\
         \r\nOne more thing.\r\n";
    let (status, _) = push(&daemon, "message/rfc822", by_references.into()).await;
    assert_eq!(status, 202);

    // A customer's reply to a mail deskgate sent on the other conversation threads there.
    let other = unrelated["data"]["conversation"]["id"].as_str().unwrap();
    let sent = outbound_message_id(other, 2, "desk.example.com");
    let reply = format!(
        "From: Tejaswini <tejaswini@example.com>\r\nTo: support@desk.example.com\r\n\
         Subject: Re: your answer\r\nMessage-ID: <reply-to-ours@example.com>\r\n\
         In-Reply-To: <{sent}>\r\nReferences: <{sent}>\r\n\r\nThanks!\r\n"
    );
    let (status, _) = push(&daemon, "message/rfc822", reply.into_bytes()).await;
    assert_eq!(status, 202);
    daemon.settled().await;
    let events = daemon.all_events().await;
    let by_references = ticket_event(&events, "by-references@chatwoot.com");
    assert_eq!(by_references["type"], "deskgate.ticket.message_added");
    assert_eq!(by_references["data"]["conversation"]["id"], conversation);
    let threaded = ticket_event(&events, "reply-to-ours@example.com");
    assert_eq!(threaded["type"], "deskgate.ticket.message_added");
    assert_eq!(threaded["data"]["conversation"]["id"], other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_stored_and_served_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &config(dir.path(), 1_000_000)).await;
    let client = reqwest::Client::new();

    // A wrong content type is refused before the body is read.
    let (status, _) = push(&daemon, "application/json", b"{}".to_vec()).await;
    assert_eq!(status, 415);
    let (status, body) = push(&daemon, "message/rfc822", b"\r\n".to_vec()).await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("empty"), "{body}");
    let (status, _) = push(&daemon, "message/rfc822", chatwoot("only_attachments.eml")).await;
    assert_eq!(status, 202);
    daemon.settled().await;
    let events = daemon.all_events().await;
    let with_files = events
        .iter()
        .find(|e| e["data"]["message"]["subject"] == "only attachments")
        .expect("the attachment mail");
    let attachments = with_files["data"]["message"]["attachments"]
        .as_array()
        .unwrap();
    assert!(!attachments.is_empty());
    for attachment in attachments {
        let id = attachment["id"].as_str().unwrap();
        let response = client
            .get(daemon.url(&format!("/v1/control/attachments/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // The part's own content type and file name, not application/octet-stream.
        let headers = response.headers().clone();
        assert_eq!(
            headers["content-type"],
            attachment["content_type"].as_str().unwrap()
        );
        if let Some(name) = attachment["name"].as_str() {
            let disposition = headers["content-disposition"].to_str().unwrap();
            assert!(
                disposition.starts_with("attachment; filename="),
                "{disposition}"
            );
            assert!(
                disposition.contains(name) || !name.is_ascii(),
                "{disposition}"
            );
        }
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, attachment["size"].as_u64().unwrap());
    }
    let missing = client
        .get(daemon.url(&format!("/v1/control/attachments/{}", "0".repeat(64))))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let anonymous = client
        .get(daemon.url(&format!("/v1/control/attachments/{}", "0".repeat(64))))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_mail_is_quarantined_then_retried_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), 300_000)).await;
    let big = chatwoot("mail_with_html_part_no_html_content.eml");
    assert!(big.len() > 300_000);
    let (status, _) = push(&daemon, "message/rfc822", big.clone()).await;
    assert_eq!(status, 202, "a quarantined mail is still acknowledged");
    daemon.settled().await;
    let events = daemon.all_events().await;
    let quarantined = events
        .iter()
        .find(|e| e["type"] == "deskgate.inbound.quarantined")
        .expect("a quarantined event");
    assert!(quarantined["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("over this channel's limit"));
    let (ok, list, stderr) = cli(&daemon, &["list"]);
    assert!(ok, "{stderr}");
    let entry = &list["items"][0];
    let seq = entry["journal_seq"].as_u64().unwrap();
    assert!(entry["retried_as"].is_null());

    // The limit is still in force: a retry reports why and journals nothing.
    let (ok, _, stderr) = cli(&daemon, &["retry", &seq.to_string()]);
    assert!(!ok);
    assert!(stderr.contains("still cannot be read"), "{stderr}");

    // Raise the limit, restart, retry: the mail becomes a message, and the entry says so.
    daemon.terminate();
    let text = std::fs::read_to_string(daemon.config_path()).unwrap();
    std::fs::write(
        daemon.config_path(),
        text.replace("max_message_bytes = 300000", "max_message_bytes = 1000000"),
    )
    .unwrap();
    daemon.restart().await;
    let (ok, retried, stderr) = cli(&daemon, &["retry", &seq.to_string()]);
    assert!(ok, "{stderr}");
    assert_eq!(retried["duplicate"], false);
    let message_seq = retried["journal_seq"].as_u64().unwrap();
    assert_eq!(retried["entry"]["retried_as"], message_seq);
    // A second retry is the same message, not another.
    let (ok, again, stderr) = cli(&daemon, &["retry", &seq.to_string()]);
    assert!(ok, "{stderr}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["journal_seq"], message_seq);
    daemon.settled().await;
    let events = daemon.all_events().await;
    let created: Vec<_> = events
        .iter()
        .filter(|e| e["data"]["message"]["journal_seq"] == message_seq)
        .collect();
    assert_eq!(created.len(), 1, "one message event for the retried mail");
    assert_eq!(
        created[0]["data"]["message"]["extra"]["quarantine_retry_of"],
        seq
    );
    let (ok, list, _) = cli(&daemon, &["list"]);
    assert!(ok);
    assert_eq!(list["items"][0]["retried_as"], message_seq);
}

#[test]
fn inspect_mail_prints_json_or_the_quarantine_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("reply.eml");
    std::fs::write(&mail, chatwoot("auto_reply.eml")).unwrap();
    let output = Command::new(daemon_bin())
        .args(["inspect", "mail"])
        .arg(&mail)
        .output()
        .unwrap();
    assert!(output.status.success());
    let view: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(view["from"]["email"], "sony@chatwoot.com");
    assert_eq!(view["auto_submitted"], true);
    assert_eq!(view["bounce"], Value::Null);
    assert_eq!(view["forwarded"], false);
    for field in [
        "subject",
        "message_id",
        "in_reply_to",
        "references",
        "date",
        "attachments",
        "text",
        "original_sender",
    ] {
        assert!(view.get(field).is_some(), "{field} missing");
    }

    let junk = dir.path().join("junk.eml");
    std::fs::write(&junk, b"this is not a mail at all").unwrap();
    let output = Command::new(daemon_bin())
        .args(["inspect", "mail"])
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("would be quarantined"));
}
