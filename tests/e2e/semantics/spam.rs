//! Spam can be undone: unmarking a conversation or a contact lifts the sender's flag and the
//! conversations' marks, with events; a ticket all of whose conversations are spam is deleted,
//! with its event, and one with a real conversation left stays.

use serde_json::{json, Value};

use super::{control, of_type, Control};
use test_kit::{api_message, Daemon};

/// Posts a message on a new thread; returns (ticket, conversation, contact, message spam flag).
async fn write(daemon: &Daemon, id: &str, from: &str) -> (String, String, String, Value) {
    let control = Control::new(daemon);
    control.hook("api", &api_message(id, id, from, "hi")).await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created")
        .into_iter()
        .find(|e| e["data"]["message"]["external_id"] == id)
        .unwrap();
    let data = &created["data"];
    (
        created["subject"].as_str().unwrap().to_owned(),
        data["conversation"]["id"].as_str().unwrap().to_owned(),
        data["ticket"]["contact_id"].as_str().unwrap().to_owned(),
        data["message"].get("spam").cloned().unwrap_or(json!(false)),
    )
}

#[tokio::test]
async fn spam_is_undone_for_conversations_and_contacts_and_all_spam_tickets_go() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &control(dir.path())).await;
    let control = Control::new(&daemon);

    // A ticket whose only conversation is spam is deleted.
    let (ticket, conversation, ana, _) = write(&daemon, "a1", "ana@example.com").await;
    let path = format!("/v1/control/conversations/{conversation}/spam");
    let (status, body) = control.send("POST", &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket_deleted"], true);
    let (status, _) = control
        .send("GET", &format!("/v1/control/tickets/{ticket}"), None)
        .await;
    assert_eq!(status, 404, "the all-spam ticket is gone");
    let events = daemon.all_events().await;
    let deleted = of_type(&events, "deskgate.ticket.deleted");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["subject"], ticket.as_str());
    let (_, _, _, spam) = write(&daemon, "a2", "ana@example.com").await;
    assert_eq!(spam, true, "the sender is flagged");

    // Unmarking the contact: later mail is not spam.
    let path = format!("/v1/control/contacts/{ana}/spam");
    let (status, body) = control.send("DELETE", &path, None).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, _, spam) = write(&daemon, "a3", "ana@example.com").await;
    assert_eq!(spam, false, "the flag is lifted");
    let events = daemon.all_events().await;
    let undone = of_type(&events, "deskgate.contact.spam_undone");
    assert_eq!(undone.len(), 1);
    assert_eq!(undone[0]["subject"], ana.as_str());

    // A ticket with a real conversation left stays; unmarking the conversation restores it.
    let (kept, spam_conversation, cy, _) = write(&daemon, "c1", "cy@example.com").await;
    let (other, _, _, _) = write(&daemon, "c2", "cy@example.com").await;
    let (status, body) = control
        .send(
            "POST",
            &format!("/v1/control/tickets/{kept}/merge"),
            Some(json!({"merged": other})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/v1/control/conversations/{spam_conversation}/spam");
    let (status, body) = control.send("POST", &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket_deleted"], false);
    let spam_state = |view: &Value| {
        view["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == spam_conversation.as_str())
            .unwrap()["state"]["spam"]
            .clone()
    };
    assert_eq!(spam_state(&control.ticket(&kept).await), true);
    let (status, body) = control.send("DELETE", &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unmarked"], json!([spam_conversation]));
    assert_eq!(spam_state(&control.ticket(&kept).await), false);
    let events = daemon.all_events().await;
    let undone = of_type(&events, "deskgate.conversation.spam_undone");
    assert_eq!(undone.len(), 1);
    assert_eq!(undone[0]["subject"], kept.as_str());
    assert_eq!(undone[0]["data"]["contact"], cy.as_str());
    let (_, _, _, spam) = write(&daemon, "c3", "cy@example.com").await;
    assert_eq!(spam, false);
}

/// A flagged sender's new ticket gets no acknowledgement from the mailbox either (the spam
/// mark stops automatic mail, not only the pipeline's actions).
#[tokio::test]
async fn a_flagged_sender_gets_no_acknowledgement() {
    use std::time::Duration;
    use test_kit::free_port;
    use test_kit::smtpd::Smtpd;

    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let config = format!(
        "{}{}",
        control(dir.path()),
        super::mailbox(smtpd.port, "[\"api\"]", true)
    );
    let daemon = Daemon::start(dir.path(), &config).await;
    let control = Control::new(&daemon);
    let (_, conversation, _, _) = write(&daemon, "s1", "sam@example.com").await;
    smtpd.wait_for(1, Duration::from_secs(30)).await;
    super::wait_events(&daemon, "deskgate.outbound.sent", 1).await;
    let path = format!("/v1/control/conversations/{conversation}/spam");
    let (status, body) = control.send("POST", &path, None).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, _, spam) = write(&daemon, "s2", "sam@example.com").await;
    assert_eq!(spam, true);
    // A message from someone else afterwards is acknowledged: the sender task has caught up.
    write(&daemon, "o1", "olga@example.com").await;
    super::wait_events(&daemon, "deskgate.outbound.sent", 2).await;
    let mails = smtpd.messages();
    assert_eq!(
        mails.len(),
        2,
        "the spam sender's second ticket got no mail"
    );
    let to_sam = mails
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains("sam@example.com"))
        .count();
    assert_eq!(
        to_sam, 1,
        "only the ticket before the spam mark was acknowledged"
    );
    let events = daemon.all_events().await;
    assert!(of_type(&events, "deskgate.outbound.suppressed").is_empty());
}
