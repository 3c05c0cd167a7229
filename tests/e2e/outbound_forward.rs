//! A team mailbox forwards each customer mail to its members (`forward_to`), through the real
//! binary and a real SMTP server (aiosmtpd on loopback): one copy per member (a team expanded,
//! a user named twice once), `Auto-Submitted: auto-generated`, a Reply-To that leads back into
//! the ticket, the original inline; nothing for automatic mail, bounces, the members' own mail
//! or deskgate's own; and each forward exactly once across a kill -9 and restart.

use std::time::Duration;

use crate::outbound_support::{header, html_body, of_type, text_body};
use mail_parser::MimeHeaders;
use serde_json::Value;
use test_kit::smtpd::Smtpd;
use test_kit::{corpus, free_port, push_mail, Daemon};

const MEMBERS: [&str; 2] = ["alice@acme.test", "bob@acme.test"];

fn config(smtp_port: u16) -> String {
    format!(
        "[channels.mail]\nkind = \"email\"\nmax_body_bytes = 2097152\n\n\
         [routing.teams.billing]\nlabel = \"Billing\"\n\
         [routing.users.alice]\nname = \"Alice\"\nemail = \"Alice@Acme.test\"\nteams = [\"billing\"]\n\
         [routing.users.bob]\nname = \"Bob\"\nemail = \"bob@acme.test\"\nteams = [\"billing\"]\n\
         [routing.users.carol]\nname = \"Carol\"\nemail = \"carol@acme.test\"\n\n\
         [outbound]\nretry_base_ms = 100\nretry_max_secs = 1\nauto_mail_per_recipient_per_hour = 1\n\n\
         [outbound.mailboxes.support]\naddress = \"support@acme.test\"\ncompany_name = \"Acme\"\n\
         channels = [\"mail\"]\nforward_to = {{ users = [\"alice\"], teams = [\"billing\"] }}\n\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"plain\"\n\
         send_timeout_secs = 10\n"
    )
}

/// Written now: a mail older than `history_age_secs` (a day) is history, never forwarded.
fn mail(from: &str, message_id: &str, extra_headers: &str, text: &str) -> String {
    format!(
        "From: {from}\r\nTo: support@acme.test\r\nCc: sales@acme.test\r\n\
         Subject: Printer on fire\r\nDate: {}\r\n\
         Message-ID: <{message_id}>\r\n{extra_headers}\r\n{text}\r\n",
        written_now()
    )
}

/// When this test run's mails were written (taken once, so that a test can look for it in the
/// forward that quotes it), as deskgate writes a Date back.
fn written_now() -> &'static str {
    static NOW: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NOW.get_or_init(|| {
        chrono::Utc::now()
            .format("%a, %-d %b %Y %H:%M:%S +0000")
            .to_string()
    })
}

async fn push(daemon: &Daemon, raw: String) {
    assert_eq!(push_mail(daemon, "mail", raw).await, 202);
}

/// The `deskgate.outbound.sent` events of forwards, once `n` exist.
async fn forwards_sent(daemon: &Daemon, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = daemon.all_events().await;
        let sent = sent_forwards(&events);
        if sent.len() >= n {
            return sent.into_iter().cloned().collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} forwards sent; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sent_forwards(events: &[Value]) -> Vec<&Value> {
    of_type(events, "deskgate.outbound.sent")
        .into_iter()
        .filter(|e| e["data"]["purpose"] == "forward")
        .collect()
}

fn recipients(mails: &[Vec<u8>]) -> Vec<String> {
    let mut to: Vec<String> = mails.iter().map(|m| header(m, "To").unwrap()).collect();
    to.sort();
    to
}

#[tokio::test]
async fn customer_mail_is_forwarded_once_to_each_member_and_nothing_else_is() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let daemon = Daemon::start(dir.path(), &config(smtpd.port)).await;

    // What must never be forwarded: automatic mail, a bounce, a member's mail (in any case),
    // deskgate's own mail.
    let automatic = mail(
        "Out Of Office <ooo@example.com>",
        "ooo-1@example.com",
        "Auto-Submitted: auto-replied\r\n",
        "I am away.",
    );
    push(&daemon, automatic).await;
    let bounce =
        std::fs::read(corpus().join("email/chatwoot/spec/fixtures/files/bounced_gmail.eml"))
            .unwrap();
    assert_eq!(push_mail(&daemon, "mail", bounce).await, 202);
    let member = mail(
        "Bob <BOB@acme.test>",
        "bob-1@acme.test",
        "",
        "Internal note.",
    );
    push(&daemon, member).await;
    let own = mail(
        "Acme <support@acme.test>",
        "own-1@acme.test",
        "",
        "Our own mail.",
    );
    push(&daemon, own).await;
    daemon.settled().await;

    // A customer's mail: one forward to Alice (named, and in billing) and one to Bob.
    let customer = mail(
        "Ana Lopez <ana@example.com>",
        "ana-1@example.com",
        "",
        "My printer is on fire & smoking.",
    );
    push(&daemon, customer).await;
    daemon.settled().await;
    let sent = forwards_sent(&daemon, 2).await;
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(recipients(&mails), MEMBERS, "{}", daemon.log());
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created")
        .into_iter()
        .find(|e| e["data"]["message"]["external_id"] == "ana-1@example.com")
        .expect("the customer's mail opened a ticket");
    let conversation = created["data"]["conversation"]["id"].as_str().unwrap();
    for forward in &mails {
        assert_eq!(header(forward, "From").unwrap(), "Acme <support@acme.test>");
        assert_eq!(header(forward, "Reply-To").unwrap(), "support@acme.test");
        assert_eq!(header(forward, "Auto-Submitted").unwrap(), "auto-generated");
        let message_id = header(forward, "Message-ID").unwrap();
        assert!(
            message_id.starts_with(&format!("<deskgate.{conversation}.")),
            "a reply's In-Reply-To names the ticket's conversation: {message_id}"
        );
        assert_eq!(
            header(forward, "References").unwrap(),
            "<ana-1@example.com>"
        );
        let subject = header(forward, "Subject").unwrap();
        assert!(subject.ends_with("] Fwd: Printer on fire"), "{subject}");
        let text = text_body(forward);
        for line in [
            "From: Ana Lopez <ana@example.com>",
            "Subject: Printer on fire",
            &format!("Date: {}", written_now()),
            "To: support@acme.test",
            "Cc: sales@acme.test",
            "My printer is on fire & smoking.",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        let html = html_body(forward).unwrap();
        assert!(html.contains("on fire &amp; smoking."), "{html}");
    }
    for event in &sent {
        assert_eq!(event["data"]["conversation_id"], conversation);
        assert_eq!(event["data"]["via"], "email");
    }

    // A member's reply to a forward (to its Reply-To) threads back into the ticket, and is not
    // forwarded: it comes from a member.
    let forward_id = header(&mails[0], "Message-ID").unwrap();
    let reply = format!(
        "From: Bob <bob@acme.test>\r\nTo: support@acme.test\r\nSubject: Re: Fwd: Printer on fire\r\n\
         Message-ID: <bob-reply@acme.test>\r\nIn-Reply-To: {forward_id}\r\n\
         References: <ana-1@example.com> {forward_id}\r\n\r\nOn it.\r\n"
    );
    push(&daemon, reply).await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let threaded = events
        .iter()
        .find(|e| e["data"]["message"]["external_id"] == "bob-reply@acme.test")
        .expect("the member's reply was recorded");
    assert_eq!(
        threaded["type"], "deskgate.ticket.message_added",
        "{threaded}"
    );
    assert_eq!(threaded["subject"], created["subject"], "the same ticket");
    assert_eq!(threaded["data"]["conversation"]["id"], conversation);

    // A second customer mail forwards again, even past the automatic-mail cap of 1 an hour:
    // the members are the desk's own people.
    // It carries its attachment along.
    let again = mail(
        "ana@example.com",
        "ana-2@example.com",
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n",
        "--b1\r\nContent-Type: text/plain\r\n\r\nStill burning.\r\n\
         --b1\r\nContent-Type: text/plain; name=\"photo.txt\"\r\n\
         Content-Disposition: attachment; filename=\"photo.txt\"\r\n\r\nsmoke\r\n--b1--",
    );
    push(&daemon, again).await;
    daemon.settled().await;
    forwards_sent(&daemon, 4).await;
    let mails = smtpd.wait_for(4, Duration::from_secs(30)).await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(
        mails.len(),
        4,
        "nothing else was forwarded: {}",
        daemon.log()
    );
    assert_eq!(sent_forwards(&events).len(), 4);
    let second: Vec<&Vec<u8>> = (mails.iter())
        .filter(|m| header(m, "References").unwrap() == "<ana-2@example.com>")
        .collect();
    assert_eq!(second.len(), 2);
    for forward in second {
        assert!(text_body(forward).contains("Still burning."));
        let parsed = mail_parser::MessageParser::default()
            .parse(forward)
            .unwrap();
        let attachment = parsed
            .attachments()
            .next()
            .expect("the original's attachment");
        assert_eq!(attachment.attachment_name(), Some("photo.txt"));
        assert_eq!(attachment.contents(), b"smoke");
    }
    assert!(
        of_type(&events, "deskgate.outbound.suppressed").is_empty()
            && of_type(&events, "deskgate.outbound.failed").is_empty(),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_kill_right_after_the_mail_is_accepted_forwards_each_copy_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let mut daemon = Daemon::start(dir.path(), &config(smtpd.port)).await;
    // Killed right after the answer: the forwards are queued in the step that records the
    // mail, whenever it runs, and sent after the restart.
    let customer = mail("Ana <ana@example.com>", "crash-1@example.com", "", "Help.");
    push(&daemon, customer).await;
    daemon.kill();
    daemon.restart().await;
    forwards_sent(&daemon, 2).await;
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(recipients(&mails), MEMBERS);
    // Killed with the forwards queued and the SMTP server down: sent once it is back.
    smtpd.stop();
    let later = mail("Ana <ana@example.com>", "crash-2@example.com", "", "Hello?");
    push(&daemon, later).await;
    daemon.settled().await;
    daemon.kill();
    smtpd.restart();
    daemon.restart().await;
    forwards_sent(&daemon, 4).await;
    smtpd.wait_for(4, Duration::from_secs(30)).await;
    // And a restart with everything sent sends nothing again.
    daemon.kill();
    daemon.restart().await;
    daemon.settled().await;
    let last = mail(
        "Ana <ana@example.com>",
        "crash-3@example.com",
        "",
        "Thanks.",
    );
    push(&daemon, last).await;
    forwards_sent(&daemon, 6).await;
    let all = smtpd.wait_for(6, Duration::from_secs(30)).await;
    assert_eq!(all.len(), 6, "{}", daemon.log());
    let events = daemon.all_events().await;
    assert_eq!(sent_forwards(&events).len(), 6);
    let mut ids: Vec<String> = all
        .iter()
        .map(|m| header(m, "Message-ID").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "each forward once: {ids:?}");
}

/// check-config names the path of an unknown member.
#[test]
fn check_config_names_unknown_members_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(2525)
        .replace("users = [\"alice\"]", "users = [\"alice\", \"zed\"]")
        .replace("teams = [\"billing\"] }", "teams = [\"nobody\"] }");
    let path = dir.path().join("deskgate.toml");
    std::fs::write(
        &path,
        format!("[state]\ndir = \"{}\"\n{text}", dir.path().display()),
    )
    .unwrap();
    let check = test_kit::check_config(&path, None);
    let said = check.output();
    assert!(!check.ok, "{said}");
    for want in [
        "outbound.mailboxes.support.forward_to.users[1]: names user \"zed\"",
        "outbound.mailboxes.support.forward_to.teams[0]: names team \"nobody\"",
    ] {
        assert!(said.contains(want), "{want:?} in {said}");
    }
}
