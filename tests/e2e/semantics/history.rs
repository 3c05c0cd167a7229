//! History is not news: a mailbox imported with `initial_sync = "all"` from a real Dovecot,
//! full of mail written years ago, opens tickets and contacts but sends no automatic mail and
//! fires no trigger or action; the events say each message was imported. A mail written now
//! on the same mailbox is acknowledged as before.

use std::time::Duration;

use super::{control, of_type};
use test_kit::dovecot::{sample_mail, Dovecot, PASSWORD};
use test_kit::smtpd::Smtpd;
use test_kit::{eventually, free_port, Daemon, SUPPORT_PIPELINE};

const OLD_MAILS: usize = 2000;

/// Added to [`SUPPORT_PIPELINE`]: new tickets are acknowledged.
const ACKNOWLEDGE: &str = r#"
[[routing.pipelines.support.actions]]
status = "new"
action = "acknowledge"
template = "ticket_received"
"#;

/// A Dovecot mailbox holding `mails` before deskgate first syncs it (`initial_sync = "all"`),
/// an SMTP server, and the config of a desk that acknowledges new tickets on it.
struct Desk {
    dovecot: Dovecot,
    dir: tempfile::TempDir,
    smtpd: Smtpd,
    config: String,
}

impl Desk {
    fn with_mailbox(mails: &[Vec<u8>], imap_extra: &str) -> Desk {
        let dovecot = Dovecot::start();
        dovecot.import(mails).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
        let password = dovecot.password_file(PASSWORD);
        let imap = format!("initial_sync = \"all\"\n{imap_extra}");
        let config = format!(
            "{}{}{}[channels.mail.tickets]\npipeline = \"support\"\n{SUPPORT_PIPELINE}{ACKNOWLEDGE}",
            control(dir.path()),
            super::mailbox(smtpd.port, "[\"mail\"]", true),
            dovecot.channel_toml("mail", "INBOX", &password, &imap),
        );
        Desk {
            dovecot,
            dir,
            smtpd,
            config,
        }
    }
}

/// The harness's sample mail, dated in 2019.
fn old_mail(i: usize) -> Vec<u8> {
    let mail = String::from_utf8(sample_mail("hist", i)).unwrap();
    let dated = mail.replace("Date: Mon, 23 Nov 2026", "Date: Mon, 4 Mar 2019");
    assert_ne!(dated, mail, "the sample mail's Date line changed");
    dated.into_bytes()
}

fn new_mail() -> Vec<u8> {
    format!(
        "From: Nia <nia@example.org>\r\nTo: support@example.test\r\nSubject: today\r\n\
         Date: {}\r\nMessage-ID: <today-1@example.org>\r\n\r\nWritten today.\r\n",
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

#[tokio::test]
async fn an_imported_mailbox_opens_tickets_but_sends_and_fires_nothing() {
    let old: Vec<Vec<u8>> = (0..OLD_MAILS).map(old_mail).collect();
    let Desk {
        dovecot,
        dir,
        smtpd,
        config,
    } = Desk::with_mailbox(&old, "batch_size = 100");
    let daemon = Daemon::start(dir.path(), &config).await;
    let count_messages = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| {
                e["type"] == "deskgate.ticket.created"
                    || e["type"] == "deskgate.ticket.message_added"
            })
            .count()
    };
    eventually("the import", Duration::from_secs(120), || async {
        count_messages(&daemon.all_events().await) >= OLD_MAILS
    })
    .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(count_messages(&events), OLD_MAILS);
    let created = of_type(&events, "deskgate.ticket.created");
    assert!(created.len() > OLD_MAILS / 2, "{} tickets", created.len());
    assert!(!of_type(&events, "deskgate.contact.created").is_empty());
    for event in events.iter().filter(|e| e["data"]["message"].is_object()) {
        let message = &event["data"]["message"];
        assert_eq!(message["imported"], true, "{event}");
        assert!(
            message["imported_reason"]
                .as_str()
                .unwrap()
                .contains("2019-03-04"),
            "{event}"
        );
    }
    for quiet in [
        "deskgate.ticket.action_requested",
        "deskgate.ticket.status_trigger",
        "deskgate.outbound.sent",
        "deskgate.outbound.suppressed",
        "deskgate.outbound.failed",
    ] {
        assert!(
            of_type(&events, quiet).is_empty(),
            "{quiet}: history is not news"
        );
    }
    // The imported tickets are where they opened, in the mirror.
    let control = super::Control::new(&daemon);
    let view = control
        .ticket(created[0]["subject"].as_str().unwrap())
        .await;
    assert_eq!(view["routing"]["status"], "new", "{view}");

    // Mail written now on the same mailbox is news: it is acknowledged (the mailbox's
    // acknowledgement and the pipeline's action).
    dovecot.import(&[new_mail()]).unwrap();
    super::wait_events(&daemon, "deskgate.outbound.sent", 2).await;
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 2);
    assert!(mails
        .iter()
        .all(|m| String::from_utf8_lossy(m).contains("nia@example.org")));
}

/// The harness's sample mail, dated now: history only because it was in the mailbox first.
fn recent_mail(i: usize) -> Vec<u8> {
    let mail = String::from_utf8(sample_mail("first", i)).unwrap();
    let (head, rest) = mail.split_once("Date: ").unwrap();
    let (_, tail) = rest.split_once("\r\n").unwrap();
    let dated = format!("{head}Date: {}\r\n{tail}", chrono::Utc::now().to_rfc2822());
    assert_ne!(dated, mail, "the sample mail's Date line changed");
    dated.into_bytes()
}

#[tokio::test]
async fn a_mailbox_first_sync_is_history_even_for_recent_mail() {
    let first: Vec<Vec<u8>> = (0..20).map(recent_mail).collect();
    let Desk {
        dovecot,
        dir,
        smtpd,
        config,
    } = Desk::with_mailbox(&first, "");
    let mut daemon = Daemon::start(dir.path(), &config).await;
    let messages = |events: &[serde_json::Value]| -> Vec<serde_json::Value> {
        events
            .iter()
            .filter(|e| e["data"]["message"].is_object())
            .cloned()
            .collect()
    };
    eventually("the first sync", Duration::from_secs(60), || async {
        messages(&daemon.all_events().await).len() >= first.len()
    })
    .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(messages(&events).len(), first.len());
    assert!(!of_type(&events, "deskgate.ticket.created").is_empty());
    for event in messages(&events) {
        let message = &event["data"]["message"];
        assert_eq!(message["imported"], true, "{event}");
        let reason = message["imported_reason"].as_str().unwrap();
        assert!(reason.contains("when deskgate first synced it"), "{event}");
    }
    for quiet in [
        "deskgate.ticket.action_requested",
        "deskgate.ticket.status_trigger",
        "deskgate.outbound.sent",
        "deskgate.outbound.suppressed",
    ] {
        assert!(
            of_type(&events, quiet).is_empty(),
            "{quiet}: a first sync is history"
        );
    }

    // Mail that arrives after the first sync is news, whether or not the daemon restarted.
    daemon.kill();
    daemon.restart().await;
    dovecot.import(&[new_mail()]).unwrap();
    super::wait_events(&daemon, "deskgate.outbound.sent", 2).await;
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 2, "the acknowledgements of the new mail only");
    assert!(mails
        .iter()
        .all(|m| String::from_utf8_lossy(m).contains("nia@example.org")));
}
