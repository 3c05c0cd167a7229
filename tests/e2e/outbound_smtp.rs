//! Mail out over a real SMTP server (aiosmtpd on loopback, writing a Maildir), through the real
//! binary: acknowledgements, agents' replies, From names, signatures, Auto-Submitted,
//! idempotency, recipient caps, machine addresses, and an SMTP outage with a restart.

use std::path::Path;
use std::time::Duration;

use crate::outbound_support::{control_post, control_toml, header, html_body, of_type, text_body};
use serde_json::{json, Value};
use test_kit::smtpd::Smtpd;
use test_kit::{api_message, free_port, Daemon};

fn config(dir: &Path, smtp_port: u16, cap: u32) -> String {
    format!(
        "{control}[outbound]\nretry_base_ms = 100\nretry_max_secs = 1\n\
         auto_mail_per_recipient_per_hour = {cap}\n\n\
         [outbound.mailboxes.support]\naddress = \"support@acme.test\"\ncompany_name = \"Acme\"\n\
         channels = [\"api\"]\nacknowledge_new_tickets = true\n\
         signature_text = \"{{{{ agent_first_name }}}} / {{{{ agent_last_name }}}}\\nAcme support, {{{{ agent_full_name }}}}\"\n\
         signature_html = \"<b>{{{{ agent_full_name }}}}</b>\"\n\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"plain\"\n\
         send_timeout_secs = 10\n",
        control = control_toml(dir)
    )
}

async fn post_message(client: &reqwest::Client, daemon: &Daemon, body: &Value) {
    let response = client
        .post(daemon.url("/hooks/api"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
}

/// Waits until `n` events of a type exist; returns every event.
async fn wait_events(daemon: &Daemon, event_type: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = daemon.all_events().await;
        if of_type(&events, event_type).len() >= n {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} {event_type}; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn conversation_of(events: &[Value]) -> String {
    of_type(events, "deskgate.ticket.created")[0]["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn acknowledgement_and_agent_reply_arrive_threaded_and_signed_once() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let daemon = Daemon::start(dir.path(), &config(dir.path(), smtpd.port, 10)).await;
    let client = reqwest::Client::new();

    let mut message = api_message("m1", "t1", "Ana@Example.com", "My printer is on fire");
    message["from"]["name"] = json!("Ana Lopez");
    post_message(&client, &daemon, &message).await;
    let mails = smtpd.wait_for(1, Duration::from_secs(30)).await;
    let events = daemon.all_events().await;
    let conversation = conversation_of(&events);
    let ack = &mails[0];
    assert_eq!(header(ack, "From").unwrap(), "Acme <support@acme.test>");
    assert_eq!(header(ack, "To").unwrap(), "ana@example.com");
    assert_eq!(header(ack, "Auto-Submitted").unwrap(), "auto-replied");
    assert_eq!(header(ack, "X-Auto-Response-Suppress").unwrap(), "All");
    assert_eq!(
        header(ack, "Message-ID").unwrap(),
        format!("<deskgate.{conversation}.1@acme.test>")
    );
    assert!(header(ack, "Subject").unwrap().ends_with("] about t1"));
    assert!(
        text_body(ack).contains("Hello Ana Lopez,"),
        "{}",
        text_body(ack)
    );
    assert!(html_body(ack)
        .unwrap()
        .contains("Thank you for writing to Acme"));

    let url = daemon.url(&format!("/v1/control/conversations/{conversation}/replies"));
    let reply = json!({
        "agent": {"id": "agent-7", "name": "Bo Berg"},
        "text": "We are sending a firefighter.",
        "html": "<p>We are sending a <i>firefighter</i>.</p>",
    });
    let (status, first) = control_post(&client, &url, Some("reply-1"), &reply).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["status"], "queued");
    let message_id = format!("deskgate.{conversation}.2@acme.test");
    assert_eq!(first["message_id"], message_id.as_str());
    let (status, again) = control_post(&client, &url, Some("reply-1"), &reply).await;
    assert_eq!(
        status, 200,
        "a retried call with the same key is the same reply"
    );
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["item_id"], first["item_id"]);

    let events = wait_events(&daemon, "deskgate.outbound.sent", 2).await;
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 2, "the retried call sent nothing more");
    let mail = mails
        .iter()
        .find(|m| header(m, "Message-ID").unwrap() == format!("<{message_id}>"))
        .expect("the reply arrived");
    assert_eq!(
        header(mail, "From").unwrap(),
        "\"Bo Berg from Acme\" <support@acme.test>"
    );
    assert_eq!(header(mail, "Subject").unwrap(), "[#1] Re: about t1");
    assert_eq!(
        header(mail, "Auto-Submitted"),
        None,
        "an agent's reply is not automatic"
    );
    let text = text_body(mail);
    assert!(text.starts_with("We are sending a firefighter."), "{text}");
    assert!(
        text.contains("-- \nBo / Berg\nAcme support, Bo Berg"),
        "{text}"
    );
    assert!(html_body(mail).unwrap().contains("<b>Bo Berg</b>"));

    let sent = of_type(&events, "deskgate.outbound.sent");
    assert_eq!(sent.len(), 2);
    let reply_sent = sent
        .iter()
        .find(|e| e["data"]["purpose"] == "agent_reply")
        .unwrap();
    assert_eq!(reply_sent["data"]["message_id"], message_id.as_str());
    assert_eq!(reply_sent["data"]["status_trigger"], "agent_emailed");
    assert_eq!(reply_sent["data"]["agent_id"], "agent-7");
    assert!(!reply_sent["data"]["provider_id"]
        .as_str()
        .unwrap()
        .is_empty());
    let ack_sent = sent
        .iter()
        .find(|e| e["data"]["purpose"] == "acknowledgement")
        .unwrap();
    assert_eq!(ack_sent["data"].get("status_trigger"), None);

    let item_url = daemon.url(&format!(
        "/v1/control/outbound/{}",
        first["item_id"].as_str().unwrap()
    ));
    let item: Value = client
        .get(item_url)
        .bearer_auth(crate::outbound_support::TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(item["status"]["status"], "sent");
}

#[tokio::test]
async fn automatic_mail_is_capped_per_recipient_and_never_goes_to_machines() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let daemon = Daemon::start(dir.path(), &config(dir.path(), smtpd.port, 2)).await;
    let client = reqwest::Client::new();

    for (id, thread) in [("c1", "t1"), ("c2", "t2"), ("c3", "t3")] {
        post_message(
            &client,
            &daemon,
            &api_message(id, thread, "cara@example.com", "hi"),
        )
        .await;
    }
    for (id, from) in [
        ("n1", "noreply@shop.example"),
        ("n2", "MAILER-DAEMON@mx.example"),
    ] {
        post_message(&client, &daemon, &api_message(id, id, from, "automatic")).await;
    }
    wait_events(&daemon, "deskgate.outbound.suppressed", 3).await;
    let events = wait_events(&daemon, "deskgate.outbound.sent", 2).await;
    let suppressed = of_type(&events, "deskgate.outbound.suppressed");
    let reasons: Vec<&str> = suppressed
        .iter()
        .map(|e| e["data"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("cap of automatic mail"))
            .count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("machine address"))
            .count(),
        2,
        "{reasons:?}"
    );
    assert_eq!(of_type(&events, "deskgate.outbound.sent").len(), 2);
    let mails = smtpd.messages();
    assert_eq!(mails.len(), 2);
    assert!(mails
        .iter()
        .all(|m| header(m, "To").unwrap() == "cara@example.com"));
}

#[tokio::test]
async fn mail_queued_while_smtp_is_down_is_sent_exactly_once_after_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), port, 10)).await;
    let client = reqwest::Client::new();
    post_message(
        &client,
        &daemon,
        &api_message("d1", "t1", "eve@example.com", "hello"),
    )
    .await;
    daemon.settled().await;
    let conversation = conversation_of(&daemon.all_events().await);
    let url = daemon.url(&format!("/v1/control/conversations/{conversation}/replies"));
    let reply =
        json!({"agent": {"id": "a1", "first_name": "Fay", "last_name": "Fox"}, "text": "On it."});
    let (status, body) = control_post(&client, &url, Some("down-1"), &reply).await;
    assert_eq!(status, 202, "{body}");
    let second = json!({"agent": {"id": "a1", "name": "Fay Fox"}, "text": "Fixed now."});
    let (status, body) = control_post(&client, &url, Some("down-2"), &second).await;
    assert_eq!(status, 202, "{body}");
    // A second customer's conversation queues beside the first: the sender may send the two
    // conversations' mails at once, but each conversation's in order.
    post_message(
        &client,
        &daemon,
        &api_message("d2", "t2", "fred@example.com", "hi"),
    )
    .await;
    daemon.settled().await;
    let other = of_type(&daemon.all_events().await, "deskgate.ticket.created")[1]["data"]
        ["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_url = daemon.url(&format!("/v1/control/conversations/{other}/replies"));
    let (status, body) = control_post(&client, &other_url, Some("down-3"), &second).await;
    assert_eq!(status, 202, "{body}");
    test_kit::eventually("a failed attempt", Duration::from_secs(30), || {
        let log = daemon.log();
        async move { log.matches("send failed; will retry").count() >= 2 }
    })
    .await;

    // Stop (SIGTERM, then kill -9) while nothing can be delivered; both mails are durable and
    // resume after each restart.
    assert!(daemon.terminate().success());
    daemon.restart().await;
    daemon.kill();
    daemon.restart().await;
    let smtpd = Smtpd::start(&dir.path().join("maildir"), port);
    let events = wait_events(&daemon, "deskgate.outbound.sent", 5).await;
    let mails = smtpd.wait_for(5, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 5);
    // Each conversation's mails leave in the order they were queued.
    let of = |conversation: &str| -> Vec<String> {
        mails
            .iter()
            .map(|m| header(m, "Message-ID").unwrap())
            .filter(|id| id.contains(conversation))
            .collect()
    };
    let expected: Vec<String> = (1..=3)
        .map(|n| format!("<deskgate.{conversation}.{n}@acme.test>"))
        .collect();
    assert_eq!(of(&conversation), expected, "{}", daemon.log());
    let other_expected: Vec<String> = (1..=2)
        .map(|n| format!("<deskgate.{other}.{n}@acme.test>"))
        .collect();
    assert_eq!(of(&other), other_expected, "{}", daemon.log());
    let sent_order: Vec<String> = of_type(&events, "deskgate.outbound.sent")
        .iter()
        .map(|e| format!("<{}>", e["data"]["message_id"].as_str().unwrap()))
        .filter(|id| id.contains(&conversation))
        .collect();
    assert_eq!(
        sent_order, expected,
        "outcomes are journaled in sending order"
    );
    assert!(of_type(&events, "deskgate.outbound.failed").is_empty());
    let first = |n: usize| {
        mails
            .iter()
            .find(|m| header(m, "Message-ID").unwrap() == expected[n])
            .unwrap()
    };
    assert_eq!(header(first(0), "Auto-Submitted").unwrap(), "auto-replied");
    assert_eq!(
        header(first(1), "From").unwrap(),
        "\"Fay Fox from Acme\" <support@acme.test>"
    );
    assert!(text_body(first(2)).starts_with("Fixed now."));
    let (status, again) = control_post(&client, &url, Some("down-1"), &reply).await;
    assert_eq!((status, again["duplicate"].clone()), (200, json!(true)));
    assert_eq!(smtpd.messages().len(), 5);
}

#[tokio::test]
async fn notifications_are_auto_generated_and_unknown_templates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let daemon = Daemon::start(dir.path(), &config(dir.path(), smtpd.port, 10)).await;
    let client = reqwest::Client::new();
    post_message(
        &client,
        &daemon,
        &api_message("c1", "t1", "cara@example.com", "hi"),
    )
    .await;
    smtpd.wait_for(1, Duration::from_secs(30)).await;
    let events = daemon.all_events().await;

    // A notification to an agent is auto-generated and starts its own thread.
    let conversation = conversation_of(&events);
    let (status, body) = control_post(
        &client,
        &daemon.url("/v1/control/outbound/automatic"),
        Some("notify-1"),
        &json!({"kind": "notification", "template": "internal_notification",
                "conversation_id": conversation, "to": "dan@acme.test",
                "fields": {"event": "New ticket", "message": "hi"}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    let notice = mails
        .iter()
        .find(|m| header(m, "To").unwrap() == "dan@acme.test")
        .unwrap();
    assert_eq!(header(notice, "Auto-Submitted").unwrap(), "auto-generated");
    assert_eq!(header(notice, "In-Reply-To"), None);
    assert!(header(notice, "Subject")
        .unwrap()
        .starts_with("[#1] [Acme] New ticket: about t"));

    let (status, body) = control_post(
        &client,
        &daemon.url("/v1/control/outbound/automatic"),
        None,
        &json!({"kind": "acknowledgement", "template": "no_such_template", "conversation_id": conversation}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("no_such_template"),
        "{body}"
    );
}

#[tokio::test]
async fn a_recipient_the_server_refuses_becomes_a_failed_event_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start_refusing(&dir.path().join("maildir"), free_port());
    let daemon = Daemon::start(dir.path(), &config(dir.path(), smtpd.port, 10)).await;
    let client = reqwest::Client::new();
    let refused = api_message("r1", "t1", "refuse-me@example.com", "hi");
    post_message(&client, &daemon, &refused).await;
    post_message(
        &client,
        &daemon,
        &api_message("r2", "t2", "gus@example.com", "hi"),
    )
    .await;

    let events = wait_events(&daemon, "deskgate.outbound.failed", 1).await;
    let failed = of_type(&events, "deskgate.outbound.failed");
    assert_eq!(failed.len(), 1);
    let data = &failed[0]["data"];
    assert_eq!(data["recipient"], "refuse-me@example.com");
    assert_eq!(data["attempts"], 3, "permanent_attempts, the default");
    assert!(data["error"].as_str().unwrap().contains("550"), "{data}");
    let events = wait_events(&daemon, "deskgate.outbound.sent", 1).await;
    assert_eq!(
        of_type(&events, "deskgate.outbound.sent")[0]["data"]["recipient"],
        "gus@example.com"
    );
    let mails = smtpd.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 1);

    // "No such mailbox" (5.1.1) is a hard bounce: no more automatic mail to that address.
    let again = api_message("r3", "t3", "refuse-me@example.com", "hello again");
    post_message(&client, &daemon, &again).await;
    let events = wait_events(&daemon, "deskgate.outbound.suppressed", 1).await;
    let suppressed = of_type(&events, "deskgate.outbound.suppressed");
    let reason = suppressed[0]["data"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("refuse-me@example.com is suppressed"),
        "{reason}"
    );
    assert!(reason.contains("5.1.1"), "{reason}");
}

/// A pooled connection the server has dropped (here: the server restarted) must not fail the
/// next send.
#[tokio::test]
async fn a_pooled_connection_the_server_dropped_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = deskgate::config::Config::parse(&format!(
        "[channels.api]\nkind = \"api\"\n{}",
        config(dir.path(), port, 10)
    ))
    .unwrap();
    let blobs = deskgate::store::Blobs::open(dir.path()).unwrap();
    let smtp = deskgate::outbound::smtp::Smtp::new(&config.outbound.mailboxes, blobs).unwrap();
    let mail = |n: u32| deskgate::outbound::EmailPayload {
        mailbox: "support".into(),
        from_name: "Acme".into(),
        from_address: "support@acme.test".into(),
        to: "ida@example.com".into(),
        subject: format!("mail {n}"),
        text: "hello".into(),
        html: None,
        message_id: format!("deskgate.c.{n}@acme.test"),
        in_reply_to: None,
        references: Vec::new(),
        reply_to: None,
        auto_submitted: None,
        attachments: Vec::new(),
    };
    let maildir = dir.path().join("maildir");
    let first = Smtpd::start(&maildir, port);
    smtp.send(&mail(1)).await.unwrap();
    drop(first);
    let second = Smtpd::start(&maildir, port);
    let accepted = smtp.send(&mail(2)).await;
    assert!(accepted.is_ok(), "{accepted:?}");
    assert_eq!(second.wait_for(2, Duration::from_secs(20)).await.len(), 2);
}

/// `from_name = "company"`: an agent's reply goes out under the company's name alone (the
/// agent still signs it), as the acknowledgement does.
#[tokio::test]
async fn the_company_from_name_mode_hides_the_agents_name() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let text = config(dir.path(), smtpd.port, 10).replace(
        "company_name = \"Acme\"\n",
        "company_name = \"Acme\"\nfrom_name = \"company\"\n",
    );
    assert!(text.contains("from_name = \"company\""));
    let daemon = Daemon::start(dir.path(), &text).await;
    let client = reqwest::Client::new();
    post_message(
        &client,
        &daemon,
        &api_message("c1", "t1", "ana@example.com", "hello"),
    )
    .await;
    smtpd.wait_for(1, Duration::from_secs(30)).await;
    let conversation = conversation_of(&daemon.all_events().await);
    let url = daemon.url(&format!("/v1/control/conversations/{conversation}/replies"));
    let reply =
        json!({"agent": {"id": "a1", "first_name": "Fay", "last_name": "Fox"}, "text": "On it."});
    let (status, body) = control_post(&client, &url, Some("company-1"), &reply).await;
    assert_eq!(status, 202, "{body}");
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    let sent = mails
        .iter()
        .find(|m| {
            header(m, "Message-ID").unwrap() == format!("<deskgate.{conversation}.2@acme.test>")
        })
        .expect("the agent's reply");
    assert_eq!(header(sent, "From").unwrap(), "Acme <support@acme.test>");
    assert!(text_body(sent).contains("Fay / Fox"), "{}", text_body(sent));
    assert!(header(sent, "Auto-Submitted").is_none());
}

/// The whole stop fits in `server.shutdown_grace_secs` (5 s in the harness), however many of
/// its stages are slow: here a request whose body never finishes holds the HTTP stage, and an
/// SMTP server that accepts and never greets holds the sender. Each stage used to get the full
/// grace period of its own (up to five in a row, past the unit's TimeoutStopSec).
#[tokio::test]
async fn a_stop_with_every_stage_busy_ends_within_the_grace_period() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let holder = std::sync::Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            holder.lock().unwrap().push(stream);
        }
    });
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), port, 10)).await;
    let client = reqwest::Client::new();
    post_message(
        &client,
        &daemon,
        &api_message("s1", "t1", "eve@example.com", "hello"),
    )
    .await;
    test_kit::eventually(
        "the sender connects to the silent server",
        Duration::from_secs(30),
        || {
            let held = std::sync::Arc::clone(&held);
            async move { !held.lock().unwrap().is_empty() }
        },
    )
    .await;
    let mut slow = std::net::TcpStream::connect(daemon.addr).unwrap();
    write!(
        slow,
        "POST /hooks/api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    let status = daemon.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert!(
        took < Duration::from_millis(6500),
        "the stop took {took:?} against a 5 s grace period:\n{}",
        daemon.log()
    );
    assert!(
        took >= Duration::from_secs(4),
        "the stop did not wait for the busy stages ({took:?}), so it shows nothing"
    );
}
