//! End-to-end: what the threading index links, and that it is forgotten with its ticket.
//!
//! A reply whose In-Reply-To names an id deskgate never saw (a gateway rewrote the Message-ID
//! of the mail it answers) still threads by the rest of its References.
//!
//! The index is forgotten with its ticket. A mail remembers every
//! Message-ID it refers to (so that a parent arriving late joins its reply); once the ticket is
//! deleted or its contact erased, those ids lead nowhere: the parent, or another reply to the
//! forgotten mail, opens a new ticket instead of joining one the store no longer has.
//! After an erasure the conversation stays (blanked), so only forgetting its ids keeps a
//! stranger's mail out of it; after a deletion the conversation is gone too, and that the
//! entries themselves go is checked by the unit test
//! `conversations::email::tests::the_index_is_bounded_and_forgotten_with_its_conversation`.
//! (Closed-ticket retention and spam purge forget through the same function:
//! `routing_triggers::a_closed_ticket_is_forgotten_after_the_retention_and_its_thread_starts_over`
//! and `spam_flags_the_sender_and_is_purged_after_the_retention`.)

use std::path::Path;

use crate::outbound_support::{control_toml, of_type, TOKEN};
use serde_json::Value;
use test_kit::Daemon;

const CONFIG: &str = "[channels.mail]\nkind = \"email\"\n";

async fn start(dir: &Path) -> Daemon {
    Daemon::start(dir, &format!("{}{CONFIG}", control_toml(dir))).await
}

/// Pushes a mail from `from` with Message-ID `<{id}@example.com>`, replying to `parent` (whose
/// mail may not have arrived).
async fn push(daemon: &Daemon, from: &str, id: &str, parent: Option<&str>) {
    let parent = parent.map(|p| format!("<{p}@example.com>"));
    push_raw(daemon, from, id, parent.as_deref(), parent.as_deref()).await;
}

/// Pushes a mail with the In-Reply-To and References given (whole header values).
async fn push_raw(
    daemon: &Daemon,
    from: &str,
    id: &str,
    in_reply_to: Option<&str>,
    references: Option<&str>,
) {
    let mut raw = format!(
        "From: {from}\r\nTo: support@acme.test\r\nSubject: Printer\r\nDate: {}\r\n\
         Message-ID: <{id}@example.com>\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    if let Some(parent) = in_reply_to {
        raw.push_str(&format!("In-Reply-To: {parent}\r\n"));
    }
    if let Some(references) = references {
        raw.push_str(&format!("References: {references}\r\n"));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\nhello\r\n");
    let status = test_kit::push_mail(daemon, "mail", raw).await;
    assert!((200..300).contains(&status), "{id}: {status}");
    daemon.settled().await;
}

/// The ticket the mail `<{id}@example.com>` went to, from its message event.
fn ticket_of(events: &[Value], id: &str) -> String {
    let external = format!("{id}@example.com");
    events
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("deskgate.ticket.created" | "deskgate.ticket.message_added")
            )
        })
        .find(|e| e["data"]["message"]["external_id"] == external.as_str())
        .map(|e| e["data"]["ticket"]["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no message event for {id}"))
}

async fn delete(daemon: &Daemon, path: &str, key: &str) {
    let response = reqwest::Client::new()
        .delete(daemon.url(path))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(
        status.is_success(),
        "{path}: {status} {}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn an_unknown_in_reply_to_falls_back_to_the_references() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    // Old git send-email wrote In-Reply-To: <yes>, which is no msg-id: it must link nothing.
    push_raw(
        &daemon,
        "Ana <ana@example.com>",
        "first",
        Some("<yes>"),
        None,
    )
    .await;
    // The agent's answer went out through a gateway that rewrote its Message-ID; the customer's
    // client replies to the rewritten id and keeps the thread's root in References.
    push_raw(
        &daemon,
        "Ana <ana@example.com>",
        "second",
        Some("<rewritten.7@gateway.example.net>"),
        Some("<first@example.com> <rewritten.7@gateway.example.net>"),
    )
    .await;
    push_raw(
        &daemon,
        "Bo <bo@example.com>",
        "stranger",
        Some("<yes>"),
        None,
    )
    .await;
    let events = daemon.all_events().await;
    assert_eq!(ticket_of(&events, "second"), ticket_of(&events, "first"));
    assert_ne!(ticket_of(&events, "stranger"), ticket_of(&events, "first"));
    assert_eq!(of_type(&events, "deskgate.ticket.created").len(), 2);
}

#[tokio::test]
async fn a_deleted_ticket_takes_its_threads_ids_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    // A reply whose parent has not arrived: its ticket holds the parent's id too.
    push(&daemon, "Ana <ana@example.com>", "reply", Some("parent")).await;
    push(&daemon, "Ana <ana@example.com>", "control", Some("parent")).await;
    let events = daemon.all_events().await;
    let first = ticket_of(&events, "reply");
    assert_eq!(
        ticket_of(&events, "control"),
        first,
        "both reply to one parent"
    );

    delete(&daemon, &format!("/v1/control/tickets/{first}"), "delete-1").await;
    let deleted = of_type(&daemon.all_events().await, "deskgate.ticket.deleted").len();
    assert_eq!(deleted, 1);

    push(&daemon, "Ana <ana@example.com>", "parent", None).await;
    push(&daemon, "Bo <bo@example.com>", "late", Some("reply")).await;
    let events = daemon.all_events().await;
    let parent = ticket_of(&events, "parent");
    let late = ticket_of(&events, "late");
    assert_ne!(parent, first, "the parent opens a new ticket");
    assert_ne!(late, first, "a reply to a deleted mail opens a new ticket");
    assert_eq!(of_type(&events, "deskgate.ticket.merge_suggested").len(), 0);
}

#[tokio::test]
async fn an_erased_contacts_threads_ids_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    push(&daemon, "Ana <ana@example.com>", "reply", Some("parent")).await;
    let events = daemon.all_events().await;
    let first = ticket_of(&events, "reply");
    let contact = of_type(&events, "deskgate.contact.created")[0]["subject"]
        .as_str()
        .unwrap()
        .to_owned();

    delete(
        &daemon,
        &format!("/v1/control/contacts/{contact}"),
        "erase-1",
    )
    .await;
    assert_eq!(
        of_type(&daemon.all_events().await, "deskgate.contact.erased").len(),
        1
    );

    // Someone else's mail naming the erased contact's thread must not land in it.
    push(&daemon, "Bo <bo@example.com>", "parent", None).await;
    push(&daemon, "Bo <bo@example.com>", "late", Some("reply")).await;
    let events = daemon.all_events().await;
    assert_ne!(ticket_of(&events, "parent"), first);
    assert_ne!(ticket_of(&events, "late"), first);
}
