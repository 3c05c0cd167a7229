//! Status-reached actions reach the customer: a pipeline's `acknowledge` action on entering
//! "new" sends the acknowledgement through the outbound sender, over a real SMTP server, once;
//! and the outbound policy still holds (a machine address gets nothing, and says why).

mod common;
mod outbound_support;

use std::time::Duration;

use common::smtpd::Smtpd;
use common::{api_message, eventually, free_port, Daemon};
use outbound_support::{control_toml, header, of_type};

const ROUTING: &str = r#"
[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "new", label = "New", open = true },
  { id = "waiting_on_contact", label = "Waiting on contact", open = true },
  { id = "waiting_on_us", label = "Waiting on us", open = true },
  { id = "closed", label = "Closed", open = false },
]

[[routing.pipelines.support.actions]]
status = "new"
action = "acknowledge"
template = "ticket_received"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledge_action_sends_one_acknowledgement_within_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let extra = format!(
        "{control}[outbound]\nretry_base_ms = 100\nretry_max_secs = 1\n\n\
         [outbound.mailboxes.support]\naddress = \"support@acme.test\"\ncompany_name = \"Acme\"\n\
         channels = [\"api\"]\n\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"plain\"\n\
         {ROUTING}",
        control = control_toml(dir.path()),
        port = smtpd.port,
    );
    let daemon = Daemon::start(dir.path(), &extra).await;
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let request = client.post(daemon.url("/hooks/api")).json(&body).send();
        async move { assert!(request.await.unwrap().status().is_success()) }
    };

    post(api_message(
        "m1",
        "t1",
        "ana@example.com",
        "My printer is on fire",
    ))
    .await;
    let mails = smtpd.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(header(&mails[0], "To").unwrap(), "ana@example.com");
    assert_eq!(header(&mails[0], "Auto-Submitted").unwrap(), "auto-replied");

    // A resend of the same message, and a later message on the same ticket: no second mail.
    post(api_message(
        "m1",
        "t1",
        "ana@example.com",
        "My printer is on fire",
    ))
    .await;
    post(api_message("m2", "t1", "ana@example.com", "Still burning")).await;

    // A machine address opens a ticket too; the action is decided, the policy refuses it.
    post(api_message(
        "m3",
        "t2",
        "mailer-daemon@example.com",
        "Undeliverable",
    ))
    .await;
    eventually(
        "the refusal to be recorded",
        Duration::from_secs(30),
        || async {
            let events = daemon.all_events().await;
            !of_type(&events, "deskgate.outbound.suppressed").is_empty()
        },
    )
    .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(
        of_type(&events, "deskgate.ticket.action_requested").len(),
        2
    );
    assert_eq!(of_type(&events, "deskgate.outbound.sent").len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtpd.messages().len(),
        1,
        "exactly one acknowledgement was sent"
    );
}
