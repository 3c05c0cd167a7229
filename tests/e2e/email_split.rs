//! End-to-end: splitting chosen mails off a conversation (`POST
//! /v1/control/conversations/{id}/split` with `{"messages": [...]}`) on the real binary, with
//! mails pushed as raw MIME through the email channel's hook. What the ticket store sees is
//! asserted: the control API's answers and the events from `/v1/events`.
//!
//! Every test starts from the same thread: A, B replying to A, C replying to B, D replying to A;
//! B is split off, so B and C go to a new ticket while A and D stay.

use std::collections::HashMap;
use std::path::Path;

use crate::outbound_support::{control_toml, of_type, TOKEN};
use serde_json::{json, Value};
use test_kit::Daemon;

const CONFIG: &str = r#"
[channels.mail]
kind = "email"

[channels.mail.tickets]
pipeline = "support"
"#;

async fn start(dir: &Path) -> Daemon {
    let config = format!(
        "{}{CONFIG}{}",
        control_toml(dir),
        test_kit::SUPPORT_PIPELINE
    );
    Daemon::start(dir, &config).await
}

/// Pushes a mail with Message-ID `<{id}@example.com>` replying to `parents` (oldest first,
/// the last one as In-Reply-To) through the hook; returns once it is journaled.
async fn push(daemon: &Daemon, id: &str, parents: &[&str]) {
    let mut head = format!(
        "From: Ana <ana@example.com>\r\nTo: support@acme.test\r\nSubject: Printer\r\n\
         Date: {}\r\nMessage-ID: <{id}@example.com>\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    if let Some(parent) = parents.last() {
        let references: Vec<String> = parents
            .iter()
            .map(|p| format!("<{p}@example.com>"))
            .collect();
        head.push_str(&format!(
            "In-Reply-To: <{parent}@example.com>\r\nReferences: {}\r\n",
            references.join(" ")
        ));
    }
    let raw = format!("{head}Content-Type: text/plain\r\n\r\nmail {id}\r\n");
    let status = test_kit::push_mail(daemon, "mail", raw).await;
    assert!((200..300).contains(&status), "{id}: {status}");
}

/// Where each mail went, by its short name: the message event's message id, ticket and
/// conversation.
#[derive(Debug, Clone)]
struct Placed {
    message: String,
    ticket: String,
    conversation: String,
}

async fn placements(daemon: &Daemon) -> HashMap<String, Placed> {
    daemon.settled().await;
    let mut out = HashMap::new();
    for event in daemon.all_events().await {
        let kind = event["type"].as_str().unwrap_or_default();
        if !matches!(
            kind,
            "deskgate.ticket.created" | "deskgate.ticket.message_added"
        ) {
            continue;
        }
        let data = &event["data"];
        let external = data["message"]["external_id"].as_str().unwrap();
        let name = external.trim_end_matches("@example.com").to_owned();
        let text = |v: &Value| v.as_str().unwrap().to_owned();
        out.insert(
            name,
            Placed {
                message: text(&data["message"]["id"]),
                ticket: text(&data["ticket"]["id"]),
                conversation: text(&data["conversation"]["id"]),
            },
        );
    }
    out
}

/// A ← B ← C and A ← D, all on one ticket.
async fn thread(daemon: &Daemon) -> HashMap<String, Placed> {
    push(daemon, "a", &[]).await;
    push(daemon, "b", &["a"]).await;
    push(daemon, "c", &["a", "b"]).await;
    push(daemon, "d", &["a"]).await;
    let placed = placements(daemon).await;
    for name in ["b", "c", "d"] {
        assert_eq!(
            placed[name].ticket, placed["a"].ticket,
            "{name} threads with a"
        );
        assert_eq!(placed[name].conversation, placed["a"].conversation);
    }
    placed
}

async fn split(
    daemon: &Daemon,
    conversation: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let url = daemon.url(&format!("/v1/control/conversations/{conversation}/split"));
    let mut request = reqwest::Client::new().post(url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn splitting_a_mail_moves_it_and_its_replies_to_a_new_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let placed = thread(&daemon).await;
    let (old_ticket, old_conversation) = (&placed["a"].ticket, &placed["a"].conversation);

    let body = json!({ "messages": [placed["b"].message] });
    let (status, answer) = split(&daemon, old_conversation, Some(body), None).await;
    assert_eq!(status, 200, "{answer}");
    let new_ticket = answer["new_ticket"].as_str().unwrap();
    let new_conversation = answer["conversation"].as_str().unwrap();
    assert_ne!(new_ticket, old_ticket);
    assert_ne!(new_conversation, old_conversation);
    let moved = json!([placed["b"].message, placed["c"].message]);
    assert_eq!(answer["messages"], moved, "b and its reply c, not a or d");

    let events = daemon.all_events().await;
    let splits = of_type(&events, "deskgate.ticket.split");
    assert_eq!(splits.len(), 1);
    let data = &splits[0]["data"];
    assert_eq!(splits[0]["subject"], old_ticket.as_str());
    assert_eq!(data["ticket"], old_ticket.as_str());
    assert_eq!(data["new_ticket"], new_ticket);
    assert_eq!(data["conversation"], new_conversation);
    assert_eq!(data["from_conversation"], old_conversation.as_str());
    assert_eq!(data["messages"], moved);
    // The new ticket is open in the old one's pipeline and status (b's reply moved it).
    assert_eq!(data["routing"]["pipeline"], "support");
    assert_eq!(data["routing"]["status"], "waiting_on_us");
    assert_eq!(data["routing"]["open"], true);
    assert!(data["new_ticket_number"].as_u64().unwrap() > 0);

    // The mirror agrees: one conversation each.
    let mirror = |id: String| {
        let url = daemon.url(&format!("/v1/control/tickets/{id}"));
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let old = mirror(old_ticket.clone()).await;
    assert_eq!(old["ticket"]["conversations"], json!([old_conversation]));
    let new = mirror(new_ticket.to_owned()).await;
    assert_eq!(new["ticket"]["conversations"], json!([new_conversation]));
}

#[tokio::test]
async fn later_mails_follow_the_mail_they_answer() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let placed = thread(&daemon).await;
    let body = json!({ "messages": [placed["b"].message] });
    let (status, answer) = split(&daemon, &placed["a"].conversation, Some(body), None).await;
    assert_eq!(status, 200, "{answer}");
    let new_ticket = answer["new_ticket"].as_str().unwrap();

    // e answers c (its References still name a and b), f answers d, g answers a.
    push(&daemon, "e", &["a", "b", "c"]).await;
    push(&daemon, "f", &["a", "d"]).await;
    push(&daemon, "g", &["a"]).await;
    let after = placements(&daemon).await;
    assert_eq!(after["e"].ticket, new_ticket, "a reply to a moved mail");
    assert_eq!(
        after["e"].conversation,
        answer["conversation"].as_str().unwrap()
    );
    assert_eq!(
        after["f"].ticket, placed["a"].ticket,
        "a reply to a mail that stayed"
    );
    assert_eq!(after["f"].conversation, placed["a"].conversation);
    assert_eq!(after["g"].ticket, placed["a"].ticket, "a reply to the root");
    // A split is deliberate: mails naming both sides suggest no merge.
    let events = daemon.all_events().await;
    assert!(of_type(&events, "deskgate.ticket.merge_suggested").is_empty());
}

#[tokio::test]
async fn refused_splits_name_the_problem_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let placed = thread(&daemon).await;
    let conversation = &placed["a"].conversation;

    let stranger = "00000000-0000-0000-0000-000000000000";
    let body = json!({ "messages": [placed["b"].message, stranger] });
    let (status, answer) = split(&daemon, conversation, Some(body), None).await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains(stranger), "{error}");
    assert!(!error.contains(&placed["b"].message), "{error}");

    // Everything replies to a: choosing it would leave nothing behind.
    let body = json!({ "messages": [placed["a"].message] });
    let (status, answer) = split(&daemon, conversation, Some(body), None).await;
    assert_eq!(status, 409, "{answer}");

    let (status, answer) =
        split(&daemon, conversation, Some(json!({ "messages": [] })), None).await;
    assert_eq!(status, 422, "{answer}");

    let body = json!({ "messages": [placed["b"].message] });
    let (status, answer) = split(&daemon, "no-such-conversation", Some(body), None).await;
    assert_eq!(status, 404, "{answer}");

    // A mail of another conversation is not one of this conversation's.
    push(&daemon, "x", &[]).await;
    let other = placed_one(&daemon, "x").await;
    assert_ne!(other.conversation, *conversation);
    let body = json!({ "messages": [other.message] });
    let (status, answer) = split(&daemon, conversation, Some(body), None).await;
    assert_eq!(status, 422, "{answer}");

    let (status, answer) = split(&daemon, conversation, Some(json!({ "message": [] })), None).await;
    assert_eq!(status, 400, "unknown field: {answer}");

    let events = daemon.all_events().await;
    assert!(of_type(&events, "deskgate.ticket.split").is_empty());
    // Without a body the whole-conversation split still answers as before.
    let (status, answer) = split(&daemon, conversation, None, None).await;
    assert_eq!(status, 409, "{answer}");
}

async fn placed_one(daemon: &Daemon, name: &str) -> Placed {
    placements(daemon)
        .await
        .remove(name)
        .expect("the mail's event")
}

#[tokio::test]
async fn a_split_survives_a_kill_and_a_retry_does_not_redo_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start(dir.path()).await;
    let placed = thread(&daemon).await;
    let conversation = &placed["a"].conversation;
    let body = json!({ "messages": [placed["b"].message] });
    let (status, first) = split(&daemon, conversation, Some(body.clone()), Some("split-b")).await;
    assert_eq!(status, 200, "{first}");

    daemon.kill();
    daemon.restart().await;
    daemon.settled().await;
    // The agent's client retries with the same key: the first answer, and no second split.
    let (status, again) = split(&daemon, conversation, Some(body.clone()), Some("split-b")).await;
    assert_eq!((status, &again), (200, &first));
    let events = daemon.all_events().await;
    assert_eq!(of_type(&events, "deskgate.ticket.split").len(), 1);

    // A new request for the same mail finds it gone from the conversation.
    let (status, answer) = split(&daemon, conversation, Some(body), None).await;
    assert_eq!(status, 422, "{answer}");

    // The moved index survived the restart.
    push(&daemon, "e", &["a", "b", "c"]).await;
    push(&daemon, "f", &["a", "d"]).await;
    let after = placements(&daemon).await;
    assert_eq!(after["e"].ticket, first["new_ticket"].as_str().unwrap());
    assert_eq!(after["f"].ticket, placed["a"].ticket);
}
