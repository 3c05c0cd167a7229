//! Status-reached actions reach the customer: a pipeline's `acknowledge` action on entering
//! "new" sends the acknowledgement through the outbound sender, over a real SMTP server, once;
//! and the outbound policy still holds (a machine address gets nothing, and says why). Actions
//! of a status the ticket store sets through the control API are sent the same way.

use std::time::Duration;

use crate::outbound_support::{control_toml, header, of_type, TOKEN};
use test_kit::smtpd::Smtpd;
use test_kit::{api_message, eventually, free_port, Daemon};

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

/// An SMTP server on loopback and a daemon whose `api` channel mails through it, with the
/// [`ROUTING`] pipeline and `routing` after it.
async fn start(dir: &std::path::Path, routing: &str) -> (Smtpd, Daemon) {
    let smtpd = Smtpd::start(&dir.join("maildir"), free_port());
    let extra = format!(
        "{control}[outbound]\nretry_base_ms = 100\nretry_max_secs = 1\n\n\
         [outbound.mailboxes.support]\naddress = \"support@acme.test\"\ncompany_name = \"Acme\"\n\
         channels = [\"api\"]\n\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"plain\"\n\
         {ROUTING}\n{routing}",
        control = control_toml(dir),
        port = smtpd.port,
    );
    let daemon = Daemon::start(dir, &extra).await;
    (smtpd, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledge_action_sends_one_acknowledgement_within_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (smtpd, daemon) = start(dir.path(), "").await;
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

/// Closing a ticket from the ticket store (the control API) carries out the pipeline's
/// "closed" actions: the customer hears it is closed and the owner is notified, once each,
/// threaded on the ticket's conversation; a repeated request changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_of_a_status_set_through_the_control_api_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let closing = "[[routing.pipelines.support.actions]]\nstatus = \"closed\"\n\
                   action = \"acknowledge\"\ntemplate = \"ticket_closed\"\n\n\
                   [[routing.pipelines.support.actions]]\nstatus = \"closed\"\naction = \"notify\"\n\
                   template = \"internal_notification\"\nowner = true\n\n\
                   [routing.users.gil]\nname = \"Gil Ng\"\nemail = \"gil@acme.test\"\n";
    let (smtpd, daemon) = start(dir.path(), closing).await;
    let client = reqwest::Client::new();
    let response = client
        .post(daemon.url("/hooks/api"))
        .json(&api_message(
            "m1",
            "t1",
            "ana@example.com",
            "Where is my parcel?",
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    smtpd.wait_for(1, Duration::from_secs(30)).await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created")[0];
    let ticket = created["subject"].as_str().unwrap().to_owned();
    let conversation = created["data"]["conversation"]["id"].as_str().unwrap();

    let control = |path: String, body: serde_json::Value, key: &'static str| {
        let request = client
            .put(daemon.url(&path))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", key)
            .json(&body)
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            assert_eq!(status, 200, "{}", response.text().await.unwrap());
        }
    };
    control(
        format!("/v1/control/tickets/{ticket}/owner"),
        serde_json::json!({ "owner": "gil" }),
        "own-1",
    )
    .await;
    for _ in 0..2 {
        control(
            format!("/v1/control/tickets/{ticket}/status"),
            serde_json::json!({ "status": "closed" }),
            "close-1",
        )
        .await;
    }
    let mails = smtpd.wait_for(3, Duration::from_secs(30)).await;
    let mut closing: Vec<String> = Vec::new();
    for mail in &mails {
        let subject = header(mail, "Subject").unwrap();
        if subject.contains("Closed:")
            || header(mail, "Auto-Submitted").as_deref() == Some("auto-generated")
        {
            closing.push(header(mail, "To").unwrap());
            let message_id = header(mail, "Message-ID").unwrap();
            assert!(
                message_id.starts_with(&format!("<deskgate.{conversation}.")),
                "sent on the ticket's conversation: {}",
                String::from_utf8_lossy(mail)
            );
        }
    }
    closing.sort();
    assert_eq!(closing, ["ana@example.com", "gil@acme.test"]);
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(
        of_type(&events, "deskgate.ticket.action_requested").len(),
        3,
        "received, then closed for the customer and the owner"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtpd.messages().len(),
        3,
        "one mail each, the repeat changed nothing"
    );
}
