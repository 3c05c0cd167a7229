//! IMAP mailboxes end to end: the real deskgate binary pulling a real Dovecot.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_kit::dovecot::{sample_mail, Dovecot, PASSWORD};
use test_kit::{eventually, Daemon};

/// External ids (Message-IDs) of every message event from channel `mail`, in outbox order.
async fn mail_ids(daemon: &Daemon) -> Vec<String> {
    daemon
        .all_events()
        .await
        .iter()
        .filter(|e| {
            let t = e["type"].as_str().unwrap_or_default();
            t == "deskgate.ticket.created" || t == "deskgate.ticket.message_added"
        })
        .filter(|e| e["data"]["message"]["channel"] == "mail")
        .map(|e| {
            e["data"]["message"]["external_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn status(daemon: &Daemon, path: &str) -> Value {
    let Ok(response) = reqwest::get(daemon.url(path)).await else {
        return Value::Null;
    };
    response.json().await.unwrap_or(Value::Null)
}

async fn durable_seq(daemon: &Daemon) -> u64 {
    status(daemon, "/v1/status").await["journal"]["durable_seq"]
        .as_u64()
        .unwrap_or(0)
}

async fn mailbox_state(daemon: &Daemon) -> Value {
    status(daemon, "/readyz").await["mailboxes"]["mail"].clone()
}

async fn wait_for_state(daemon: &Daemon, state: &str) {
    eventually(
        &format!("mailbox state {state}"),
        Duration::from_secs(20),
        || async { mailbox_state(daemon).await["state"] == state },
    )
    .await;
}

/// Waits until `count` distinct mails are events, then checks none came twice.
async fn expect_each_once(daemon: &Daemon, tag: &str, count: usize) {
    eventually(
        &format!("{count} mails"),
        Duration::from_secs(90),
        || async { mail_ids(daemon).await.len() >= count },
    )
    .await;
    daemon.settled().await;
    let ids = mail_ids(daemon).await;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "a mail became two events");
    assert_eq!(ids.len(), count, "events: {ids:?}");
    for i in 0..count {
        assert!(
            unique.contains(&format!("{tag}-{i}@example.org")),
            "mail {i} is missing"
        );
    }
}

fn mails(tag: &str, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(|i| sample_mail(tag, i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_mail_during_idle_is_an_event_within_two_seconds() {
    let dovecot = Dovecot::start();
    // Already there at the first connect: `initial_sync = "new"` (the default) leaves it.
    dovecot.append("INBOX", &mails("old", 0..3)).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let daemon = Daemon::start(
        dir.path(),
        &dovecot.channel_toml("mail", "INBOX", &password, ""),
    )
    .await;
    wait_for_state(&daemon, "idle").await;
    assert!(mailbox_state(&daemon).await["last_sync"].is_string());

    dovecot.append("INBOX", &[sample_mail("idle", 0)]).await;
    let appended = Instant::now();
    eventually(
        "the new mail as an event",
        Duration::from_secs(2),
        || async {
            mail_ids(&daemon)
                .await
                .contains(&"idle-0@example.org".to_owned())
        },
    )
    .await;
    eprintln!(
        "IDLE: event visible {:?} after the append",
        appended.elapsed()
    );
    daemon.settled().await;
    assert_eq!(mail_ids(&daemon).await, ["idle-0@example.org"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_sync_has_no_duplicate_and_no_gap() {
    let dovecot = Dovecot::start();
    dovecot.append("INBOX", &mails("restart", 0..600)).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let extra = "initial_sync = \"all\"\nbatch_size = 5\nafter_ingest = \"mark_seen\"";
    let mut daemon = Daemon::start(
        dir.path(),
        &dovecot.channel_toml("mail", "INBOX", &password, extra),
    )
    .await;
    eventually("the sync to begin", Duration::from_secs(30), || async {
        durable_seq(&daemon).await > 0
    })
    .await;
    daemon.kill();
    daemon.restart().await;
    let journaled = durable_seq(&daemon).await;
    assert!(
        journaled < 600,
        "the sync had finished ({journaled}) before the kill"
    );
    expect_each_once(&daemon, "restart", 600).await;
    assert!(daemon.log().contains("synced "), "no progress was logged");
    // Every journaled mail was marked \Seen after the checkpoint.
    let mut session = dovecot.session().await;
    session.select("INBOX").await.unwrap();
    let unseen = session.search("UNSEEN").await.unwrap();
    assert!(unseen.is_empty(), "{} mails still unseen", unseen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_change_resyncs_without_duplicates() {
    let dovecot = Dovecot::start();
    dovecot.create_folder("Support").await;
    dovecot.append("Support", &mails("valid", 0..5)).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let toml = dovecot.channel_toml("mail", "Support", &password, "initial_sync = \"all\"");
    let mut daemon = Daemon::start(dir.path(), &toml).await;
    expect_each_once(&daemon, "valid", 5).await;
    // SIGTERM stops the mailbox task, so the journal writer and the daemon can finish.
    assert!(daemon.terminate().success());
    assert!(daemon.log().contains("IMAP mailbox stopped"));

    let before = dovecot.uid_validity("Support");
    dovecot.recreate_folder("Support").await;
    dovecot.append("Support", &mails("valid", 0..6)).await;
    assert_ne!(
        dovecot.uid_validity("Support"),
        before,
        "UIDVALIDITY did not change"
    );
    daemon.restart().await;
    expect_each_once(&daemon, "valid", 6).await;
    assert!(daemon.log().contains("UIDVALIDITY changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dropping_the_connection_mid_fetch_is_recovered() {
    let mut dovecot = Dovecot::start();
    dovecot.append("INBOX", &mails("drop", 0..600)).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let extra = "initial_sync = \"all\"\nbatch_size = 5";
    let daemon = Daemon::start(
        dir.path(),
        &dovecot.channel_toml("mail", "INBOX", &password, extra),
    )
    .await;
    eventually("the sync to begin", Duration::from_secs(30), || async {
        durable_seq(&daemon).await > 0
    })
    .await;
    dovecot.kick();
    let seen = durable_seq(&daemon).await;
    eventually("the sync to go on", Duration::from_secs(30), || async {
        durable_seq(&daemon).await > seen
    })
    .await;
    dovecot.restart();
    expect_each_once(&daemon, "drop", 600).await;
    assert!(
        daemon.log().contains("IMAP mailbox connection failed"),
        "no reconnect was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_reported_and_retried() {
    let dovecot = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file("not-the-password");
    let toml = dovecot.channel_toml("mail", "INBOX", &password, "auth_retry_secs = 1");
    let daemon = Daemon::start(dir.path(), &toml).await;
    wait_for_state(&daemon, "auth_failed").await;
    let state = mailbox_state(&daemon).await;
    let error = state["last_error"].as_str().unwrap();
    assert!(error.starts_with("auth: authentication failed"), "{error}");
    let log = daemon.log();
    assert!(
        log.contains("IMAP mailbox cannot log in") && log.contains("channel=mail"),
        "{log}"
    );

    // Fixed without a restart: the password file is read at every attempt.
    std::fs::write(&password, PASSWORD).unwrap();
    wait_for_state(&daemon, "idle").await;
    dovecot.append("INBOX", &[sample_mail("late", 0)]).await;
    expect_each_once(&daemon, "late", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_authentication_failure_is_retried_at_the_normal_backoff() {
    // Found by the chaos run: after a Dovecot restart a LOGIN can get `NO [UNAVAILABLE]`, and
    // deskgate waited auth_retry_secs (300 s by default) before trying again.
    let dovecot = Dovecot::start();
    dovecot.set_auth_available(false);
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let toml = dovecot.channel_toml("mail", "INBOX", &password, "");
    let daemon = Daemon::start(dir.path(), &toml).await;
    eventually(
        "the temporary failure to be reported",
        Duration::from_secs(20),
        || async {
            let state = mailbox_state(&daemon).await;
            state["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("Temporary authentication failure"))
        },
    )
    .await;
    let state = mailbox_state(&daemon).await;
    assert_ne!(state["state"], "auth_failed", "{state}");
    dovecot.set_auth_available(true);
    wait_for_state(&daemon, "idle").await;
    dovecot.append("INBOX", &[sample_mail("tempfail", 0)]).await;
    expect_each_once(&daemon, "tempfail", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_the_mailbox_is_polled_and_mail_moved_after_ingest() {
    // Neither IDLE nor MOVE: deskgate polls, and moves by COPY, \Deleted and UID EXPUNGE.
    let dovecot = Dovecot::start_with("imap_capability = IMAP4rev1 LITERAL+ UIDPLUS\n");
    dovecot.create_folder("Done").await;
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let extra = "poll_interval_secs = 1\nafter_ingest = { move_to = \"Done\" }";
    let daemon = Daemon::start(
        dir.path(),
        &dovecot.channel_toml("mail", "INBOX", &password, extra),
    )
    .await;
    wait_for_state(&daemon, "polling").await;
    dovecot.append("INBOX", &mails("poll", 0..3)).await;
    expect_each_once(&daemon, "poll", 3).await;

    let exists = |folder: &'static str| {
        let dovecot = &dovecot;
        async move {
            let mut session = dovecot.session().await;
            session.examine(folder).await.unwrap().exists
        }
    };
    eventually(
        "the mails to leave INBOX",
        Duration::from_secs(10),
        || async { exists("INBOX").await == 0 },
    )
    .await;
    assert_eq!(exists("Done").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_is_renewed_and_still_delivers() {
    let dovecot = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let toml = dovecot.channel_toml("mail", "INBOX", &password, "idle_renew_secs = 1");
    let daemon = Daemon::start(dir.path(), &toml).await;
    eventually("two IDLE renewals", Duration::from_secs(20), || async {
        daemon.log().matches("response=Timeout").count() >= 2
    })
    .await;
    dovecot.append("INBOX", &[sample_mail("renewed", 0)]).await;
    expect_each_once(&daemon, "renewed", 1).await;
    assert!(!daemon.log().contains("IMAP mailbox connection failed"));

    // A connection dropped during IDLE ends the wait like an interrupt; DONE fails, and the
    // task reconnects and fetches from its checkpoint.
    dovecot.kick();
    eventually("the reconnect", Duration::from_secs(20), || async {
        daemon.log().contains("IMAP mailbox connection failed")
    })
    .await;
    dovecot.append("INBOX", &[sample_mail("renewed", 1)]).await;
    expect_each_once(&daemon, "renewed", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_starttls_mailboxes_verify_the_server() {
    let dovecot = Dovecot::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let password = dovecot.password_file(PASSWORD);
    let ca = dovecot.ca_file.clone().unwrap();
    let tls_port = dovecot.tls_port.unwrap();
    let ca_line = format!("ca_file = \"{}\"", ca.display());
    // `mail` speaks implicit TLS to `localhost`; `starttls` upgrades on the plain port and
    // checks the IP address in the certificate; `untrusted` lacks the CA and must fail.
    let toml = [
        dovecot.channel_toml_at(
            "mail",
            "INBOX",
            &password,
            ("localhost", "implicit", tls_port),
            &ca_line,
        ),
        dovecot.channel_toml_at(
            "starttls",
            "INBOX",
            &password,
            ("127.0.0.1", "starttls", dovecot.port),
            &ca_line,
        ),
        dovecot.channel_toml_at(
            "untrusted",
            "INBOX",
            &password,
            ("localhost", "implicit", tls_port),
            "",
        ),
    ]
    .join("\n");
    let daemon = Daemon::start(dir.path(), &toml).await;
    eventually(
        "both TLS mailboxes in IDLE",
        Duration::from_secs(20),
        || async {
            let all = status(&daemon, "/readyz").await["mailboxes"].clone();
            all["mail"]["state"] == "idle" && all["starttls"]["state"] == "idle"
        },
    )
    .await;
    eventually(
        "the untrusted mailbox to fail",
        Duration::from_secs(20),
        || async {
            let all = status(&daemon, "/readyz").await["mailboxes"].clone();
            all["untrusted"]["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("tls:"))
        },
    )
    .await;
    dovecot.append("INBOX", &[sample_mail("tls", 0)]).await;
    expect_each_once(&daemon, "tls", 1).await;
    eventually(
        "the STARTTLS mailbox's event",
        Duration::from_secs(10),
        || async {
            daemon
                .all_events()
                .await
                .iter()
                .any(|e| e["data"]["message"]["channel"] == "starttls")
        },
    )
    .await;
}
