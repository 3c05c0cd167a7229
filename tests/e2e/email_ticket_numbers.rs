//! End-to-end: ticket numbers on the real binary. Every ticket gets a short number, carried
//! in its events and in the subject tag (`[#1]`) of automatic mail and agents' replies (seen
//! by a real SMTP server); a reply that lost In-Reply-To and References threads by the tag
//! only from a participant and never as a forward; numbers go on after a kill -9.

use std::path::Path;
use std::time::Duration;

use crate::outbound_support::{control_post, control_toml, header, of_type};
use serde_json::{json, Value};
use test_kit::smtpd::Smtpd;
use test_kit::{free_port, Daemon};

fn config(dir: &Path, smtp_port: u16) -> String {
    format!(
        "{control}[channels.mail]\nkind = \"email\"\nmax_body_bytes = 1048576\n\n\
         [outbound]\nretry_base_ms = 100\nretry_max_secs = 1\n\n\
         [outbound.mailboxes.support]\naddress = \"support@acme.test\"\ncompany_name = \"Acme\"\n\
         channels = [\"mail\"]\nacknowledge_new_tickets = true\n\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"plain\"\n\
         send_timeout_secs = 10\n",
        control = control_toml(dir)
    )
}

/// A mail from `from`, with optional In-Reply-To.
fn mail(id: &str, from: &str, subject: &str, in_reply_to: Option<&str>) -> Vec<u8> {
    let reply = in_reply_to
        .map(|p| format!("In-Reply-To: <{p}>\r\n"))
        .unwrap_or_default();
    format!(
        "From: {from}\r\nTo: support@acme.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         {reply}Date: {}\r\n\r\nHello.\r\n",
        // Written now: older than a day, it would be history and get no acknowledgement.
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

async fn push(daemon: &Daemon, raw: Vec<u8>) {
    assert_eq!(test_kit::push_mail(daemon, "mail", raw).await, 202);
}

/// The message event of the mail with this Message-ID.
async fn message_event(daemon: &Daemon, id: &str) -> Value {
    daemon.settled().await;
    daemon
        .all_events()
        .await
        .into_iter()
        .find(|e| e["data"]["message"]["external_id"] == id)
        .unwrap_or_else(|| panic!("no event for {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_have_numbers_that_subjects_carry_and_only_participants_use() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), smtpd.port)).await;

    push(
        &daemon,
        mail("a1@x.test", "Ana <ana@example.com>", "Printer", None),
    )
    .await;
    let first = message_event(&daemon, "a1@x.test").await;
    assert_eq!(first["type"], "deskgate.ticket.created");
    assert_eq!(first["data"]["ticket"]["number"], 1);
    assert_eq!(first["data"]["ticket_number"], 1);
    let ticket = first["data"]["ticket"]["id"].as_str().unwrap().to_owned();
    let conversation = first["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    push(
        &daemon,
        mail("b1@x.test", "bo@example.com", "Scanner", None),
    )
    .await;
    let second = message_event(&daemon, "b1@x.test").await;
    assert_eq!(second["data"]["ticket"]["number"], 2);

    // The acknowledgement carries the tag; so does an agent's reply.
    let acks = smtpd.wait_for(2, Duration::from_secs(30)).await;
    let subjects: Vec<String> = acks.iter().map(|m| header(m, "Subject").unwrap()).collect();
    assert!(
        subjects.contains(&"[#1] Printer".to_owned()),
        "{subjects:?}"
    );
    let url = daemon.url(&format!("/v1/control/conversations/{conversation}/replies"));
    let body = json!({"agent": {"id": "a", "name": "Bo"}, "text": "On it."});
    let (status, answer) = control_post(&reqwest::Client::new(), &url, Some("r1"), &body).await;
    assert_eq!(status, 202, "{answer}");
    let sent = smtpd.wait_for(3, Duration::from_secs(30)).await;
    let reply_subjects: Vec<String> = sent.iter().map(|m| header(m, "Subject").unwrap()).collect();
    assert!(
        reply_subjects.contains(&"[#1] Re: Printer".to_owned()),
        "{reply_subjects:?}"
    );
    // Every ticket event names the number.
    daemon.settled().await;
    for event in daemon.all_events().await {
        if event["subject"] == ticket.as_str()
            && event["type"]
                .as_str()
                .unwrap()
                .starts_with("deskgate.ticket.")
        {
            assert_eq!(event["data"]["ticket_number"], 1, "{event}");
        }
    }

    // Ana's client dropped the threading headers but kept the tag: her ticket.
    push(
        &daemon,
        mail("a2@x.test", "ana@example.com", "Re: [#1] Printer", None),
    )
    .await;
    let tagged = message_event(&daemon, "a2@x.test").await;
    assert_eq!(tagged["type"], "deskgate.ticket.message_added", "{tagged}");
    assert_eq!(tagged["data"]["ticket"]["id"], ticket.as_str());
    // A stranger who writes the same tag opens a ticket of their own.
    push(
        &daemon,
        mail("e1@x.test", "eve@example.com", "[#1] let me in", None),
    )
    .await;
    let stranger = message_event(&daemon, "e1@x.test").await;
    assert_eq!(stranger["type"], "deskgate.ticket.created");
    assert_eq!(stranger["data"]["ticket"]["number"], 3);
    // So does Ana's forward of it.
    push(
        &daemon,
        mail("a3@x.test", "ana@example.com", "Fwd: [#1] Printer", None),
    )
    .await;
    let forward = message_event(&daemon, "a3@x.test").await;
    assert_eq!(forward["type"], "deskgate.ticket.created");
    assert_eq!(forward["data"]["ticket"]["number"], 4);

    // Numbers survive a kill -9 and are never given twice.
    daemon.kill();
    daemon.restart().await;
    push(&daemon, mail("c1@x.test", "cy@example.com", "Fax", None)).await;
    let after = message_event(&daemon, "c1@x.test").await;
    assert_eq!(after["data"]["ticket"]["number"], 5);
    let numbers: Vec<u64> = of_type(&daemon.all_events().await, "deskgate.ticket.created")
        .iter()
        .map(|e| e["data"]["ticket"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
}

/// To and Cc stay on the message; a Cc'd person becomes a contact and a participant of the
/// ticket, so that their reply naming the ticket only by its tag threads in; a text-only mail
/// has no `html`; quoted-printable text with CRLF line ends reads with LF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_is_kept_and_makes_participants_and_text_is_text() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let daemon = Daemon::start(dir.path(), &config(dir.path(), smtpd.port)).await;
    let first = "From: Ana <ana@example.com>\r\nTo: support@acme.test\r\nCc: Bo <Bo@Example.com>, support@acme.test\r\n\
                 Subject: Printer\r\nMessage-ID: <cc1@x.test>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                 line one\r\nline two =E2=9C=93\r\n";
    push(&daemon, first.as_bytes().to_vec()).await;
    let event = message_event(&daemon, "cc1@x.test").await;
    let message = &event["data"]["message"];
    assert_eq!(message["email"]["to"], json!(["support@acme.test"]));
    assert_eq!(
        message["email"]["cc"],
        json!(["bo@example.com", "support@acme.test"])
    );
    assert!(message.get("html").is_none(), "{message}");
    assert_eq!(message["text"], "line one\nline two ✓\n");
    let events = daemon.all_events().await;
    let bo = of_type(&events, "deskgate.contact.created")
        .into_iter()
        .find(|e| e["data"]["contact"].to_string().contains("bo@example.com"))
        .expect("Bo became a contact");
    let bo_id = bo["subject"].as_str().unwrap();
    assert_eq!(event["data"]["ticket"]["participants"], json!([bo_id]));

    // Bo answers naming the ticket only by its tag: he is a participant, so it threads in.
    push(
        &daemon,
        mail("cc2@x.test", "bo@example.com", "Re: [#1] Printer", None),
    )
    .await;
    let reply = message_event(&daemon, "cc2@x.test").await;
    assert_eq!(reply["type"], "deskgate.ticket.message_added", "{reply}");
    assert_eq!(reply["data"]["ticket"]["id"], event["data"]["ticket"]["id"]);
}
