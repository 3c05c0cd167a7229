//! GDPR consent on a real `kind = "messenger"` channel (`outbound.messenger.<channel>.consent`),
//! through the real binary, against the fake Graph API of `outbound_graph` (which checks every
//! Send API call, quick replies included). What the ticket store sees is what is asserted: the
//! events in the outbox and the calls Meta received.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use test_kit::Daemon;

use crate::outbound_graph::{
    check_config_refuses, config, start_fake, wait_outcomes, Fake, PAGE_ID,
};
use crate::outbound_support::{of_type, TOKEN};

const CONSENT_TEXT: &str = "Nous gardons vos messages pour vous répondre. https://example.com/rgpd";
const INSTANT: &str = "Bonjour ! Un agent vous répond bientôt.";

/// Starts deskgate with Messenger channel `page` whose `[outbound.messenger.page]` table ends
/// with `consent` (settings lines).
async fn start_page(dir: &std::path::Path, consent: &str) -> (Fake, Daemon) {
    let (graph, fake) = start_fake().await;
    let extra = format!(
        "{}\n[channels.page]\nkind = \"messenger\"\n{}\n\n\
         [outbound.messenger.page]\npage_id = \"{PAGE_ID}\"\npage_access_token_file = \"{}\"\n\
         instant_reply = \"{INSTANT}\"\n{consent}\n",
        config(dir, &graph),
        crate::messaging_support::meta_table(dir),
        dir.join("page-token").display(),
    );
    (fake, Daemon::start(dir, &extra).await)
}

fn consent_lines(mode: &str) -> String {
    format!(
        "consent = \"{mode}\"\nconsent_text = \"{CONSENT_TEXT}\"\nconsent_version = 3\n\
         consent_agree_label = \"J'accepte\"\n"
    )
}

/// A visitor's message (`payload`: the quick reply they tapped, if any), posted signed.
async fn visitor(
    client: &reqwest::Client,
    daemon: &Daemon,
    psid: &str,
    mid: &str,
    text: &str,
    payload: Option<&str>,
) {
    let mut message = json!({ "mid": mid, "text": text });
    if let Some(payload) = payload {
        message["quick_reply"] = json!({ "payload": payload });
    }
    let webhook = json!({ "object": "page", "entry": [{ "id": PAGE_ID, "time": 1,
        "messaging": [{ "sender": { "id": psid }, "recipient": { "id": PAGE_ID },
            "timestamp": Utc::now().timestamp_millis(), "message": message }] }] });
    let body = serde_json::to_vec(&webhook).unwrap();
    let (status, answer) = crate::messaging_support::post_meta(client, daemon, "page", &body).await;
    assert_eq!(status, 200, "{answer}");
    daemon.settled().await;
}

/// Waits until the fake Graph API has received `n` Send API calls, then a little longer to see
/// that no more come; returns them.
async fn graph_calls(fake: &Fake, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.seen.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} Send API calls"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        fake.problems.lock().unwrap().is_empty(),
        "{:?}",
        fake.problems
    );
    fake.seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.clone())
        .collect()
}

/// The visitor `psid`, new on an explicit page, writes (`mids.0`), gets the consent request
/// (the first Send API call) and taps its button (`mids.1`); returns the button's payload.
async fn write_and_agree(
    client: &reqwest::Client,
    (daemon, fake): (&Daemon, &Fake),
    psid: &str,
    (mid, tap): (&str, &str),
) -> String {
    visitor(client, daemon, psid, mid, "Bonjour", None).await;
    let payload = graph_calls(fake, 1).await[0]["message"]["quick_replies"][0]["payload"]
        .as_str()
        .unwrap()
        .to_owned();
    visitor(client, daemon, psid, tap, "J'accepte", Some(&payload)).await;
    payload
}

/// A control API GET's JSON answer.
async fn control_get(client: &reqwest::Client, url: &str) -> Value {
    let request = client.get(url).bearer_auth(TOKEN);
    request.send().await.unwrap().json().await.unwrap()
}

/// The types of the ticket and conversation events, in outbox order.
fn ticket_events(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| {
            let t = e["type"].as_str().unwrap_or_default();
            t.starts_with("deskgate.ticket.") || t.starts_with("deskgate.conversation.")
        })
        .collect()
}

fn external_ids(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["data"]["message"]["external_id"].as_str())
        .map(str::to_owned)
        .collect()
}

/// Explicit consent: the visitor's messages open no ticket and get no automatic reply, only the
/// consent text with its agree button (once, also across a kill -9 and restart); the tap
/// records the consent on the contact (in `contact.updated`) and the kept messages then open
/// the ticket, in their order, followed by the instant reply.
#[tokio::test]
async fn explicit_consent_holds_messages_until_the_visitor_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, mut daemon) = start_page(dir.path(), &consent_lines("explicit")).await;
    let client = reqwest::Client::new();
    visitor(&client, &daemon, "4242", "m_held_1", "Ma commande ?", None).await;
    visitor(&client, &daemon, "4242", "m_held_2", "Numéro 1042", None).await;

    let calls = graph_calls(&fake, 1).await;
    assert_eq!(calls.len(), 1, "one consent request: {calls:?}");
    let request = &calls[0];
    assert_eq!(request["recipient"]["id"], "4242");
    assert_eq!(request["messaging_type"], "RESPONSE");
    assert_eq!(request["message"]["text"], CONSENT_TEXT);
    let replies = request["message"]["quick_replies"].as_array().unwrap();
    assert_eq!(replies.len(), 1, "{request}");
    assert_eq!(replies[0]["title"], "J'accepte");
    let payload = replies[0]["payload"].as_str().unwrap().to_owned();
    let events = wait_outcomes(&daemon, 1).await;
    assert!(ticket_events(&events).is_empty(), "{events:#?}");
    let sent = of_type(&events, "deskgate.outbound.sent");
    assert_eq!(sent[0]["data"]["purpose"], "consent");

    // Kept across a crash: nothing is lost, nothing is sent twice.
    daemon.kill();
    daemon.restart().await;
    visitor(
        &client,
        &daemon,
        "4242",
        "m_tap",
        "J'accepte",
        Some(&payload),
    )
    .await;

    let calls = graph_calls(&fake, 2).await;
    assert_eq!(
        calls.len(),
        2,
        "the consent request, then the instant reply: {calls:?}"
    );
    assert_eq!(calls[1]["message"]["text"], INSTANT);
    let events = daemon.all_events().await;
    let updated = of_type(&events, "deskgate.contact.updated");
    assert_eq!(updated.len(), 1, "{updated:#?}");
    let consent = &updated[0]["data"]["consent"];
    assert_eq!(consent["kind"], "explicit");
    assert_eq!(consent["version"], 3);
    assert_eq!(updated[0]["data"]["contact"]["consent"]["page"], *consent);
    let tickets = ticket_events(&events);
    assert_eq!(tickets[0]["type"], "deskgate.ticket.created");
    assert_eq!(
        external_ids(&tickets),
        ["m_held_1", "m_held_2"],
        "the tap is no message"
    );
    let seq = |e: &Value| {
        e["sequence"]
            .as_u64()
            .or_else(|| e["sequence"].as_str()?.parse().ok())
    };
    assert!(
        seq(updated[0]) < seq(tickets[0]),
        "consent before the ticket"
    );
    assert_eq!(
        of_type(&events, "deskgate.contact.created").len(),
        1,
        "one contact"
    );

    // Once consented, messages go straight through.
    visitor(&client, &daemon, "4242", "m_after", "Merci", None).await;
    let events = daemon.all_events().await;
    let tickets = ticket_events(&events);
    assert_eq!(external_ids(&tickets), ["m_held_1", "m_held_2", "m_after"]);
    assert_eq!(graph_calls(&fake, 2).await.len(), 2, "no new request");
}

/// Implicit consent: the consent text is sent once, before the instant reply, the consent is
/// recorded as implicit at the first message, and the messages open the ticket as usual.
#[tokio::test]
async fn implicit_consent_sends_the_text_once_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, daemon) = start_page(dir.path(), &consent_lines("implicit")).await;
    let client = reqwest::Client::new();
    visitor(&client, &daemon, "5151", "m_imp_1", "Bonjour", None).await;
    visitor(&client, &daemon, "5151", "m_imp_2", "Encore moi", None).await;

    let calls = graph_calls(&fake, 2).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["message"]["text"], CONSENT_TEXT);
    assert!(calls[0]["message"].get("quick_replies").is_none());
    assert_eq!(calls[1]["message"]["text"], INSTANT);
    let events = wait_outcomes(&daemon, 2).await;
    let updated = of_type(&events, "deskgate.contact.updated");
    assert_eq!(updated.len(), 1, "{updated:#?}");
    assert_eq!(updated[0]["data"]["consent"]["kind"], "implicit");
    assert_eq!(updated[0]["data"]["consent"]["version"], 3);
    let created = of_type(&events, "deskgate.ticket.created");
    assert_eq!(created.len(), 1);
    assert_eq!(
        external_ids(&ticket_events(&events)),
        ["m_imp_1", "m_imp_2"]
    );
    let sent = of_type(&events, "deskgate.outbound.sent");
    assert_eq!(sent[0]["data"]["purpose"], "consent");
    assert_eq!(
        sent[0]["data"]["conversation_id"],
        created[0]["data"]["conversation"]["id"]
    );
}

/// `consent = "off"` (with a text configured): nothing is asked or recorded, the page behaves as
/// without the setting.
#[tokio::test]
async fn consent_off_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, daemon) = start_page(dir.path(), &consent_lines("off")).await;
    let client = reqwest::Client::new();
    visitor(&client, &daemon, "6161", "m_off_1", "Bonjour", None).await;

    let calls = graph_calls(&fake, 1).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["message"]["text"], INSTANT);
    let events = daemon.all_events().await;
    assert!(of_type(&events, "deskgate.contact.updated").is_empty());
    let created = of_type(&events, "deskgate.contact.created");
    assert!(created[0]["data"]["contact"].get("consent").is_none());
    assert_eq!(of_type(&events, "deskgate.ticket.created").len(), 1);
}

/// Erasure takes the consent and the messages kept for it: a visitor who had agreed is asked
/// again after the erasure (their next message is kept, not added to a ticket), and a kept
/// message never reaches a ticket, even when its visitor agrees afterwards.
#[tokio::test]
async fn erasure_removes_the_consent_and_the_kept_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, daemon) = start_page(dir.path(), &consent_lines("explicit")).await;
    let client = reqwest::Client::new();
    // One visitor agrees, another only writes.
    let payload = write_and_agree(
        &client,
        (&daemon, &fake),
        "7001",
        ("m_agreed_1", "m_agreed_tap"),
    )
    .await;
    visitor(&client, &daemon, "7002", "m_kept_1", "Mon secret", None).await;
    // Request to 7001, instant reply to 7001, request to 7002.
    assert_eq!(graph_calls(&fake, 3).await.len(), 3);
    let events = daemon.all_events().await;
    let contacts = of_type(&events, "deskgate.contact.created");
    assert_eq!(contacts.len(), 2);
    let contact_url =
        |id: &Value| daemon.url(&format!("/v1/control/contacts/{}", id.as_str().unwrap()));
    let agreed = contact_url(&contacts[0]["subject"]);
    let answer = control_get(&client, &agreed).await;
    assert_eq!(
        answer["contact"]["consent"]["page"]["kind"], "explicit",
        "{answer}"
    );

    // 7001: the message in the ticket and the tap; 7002: the kept message. Their journal
    // records are redacted.
    for (n, (contact, messages)) in contacts.iter().zip([2, 1]).enumerate() {
        let response = client
            .delete(contact_url(&contact["subject"]))
            .bearer_auth(TOKEN)
            .header("idempotency-key", format!("erase-{n}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["erased"]["messages"], messages, "{answer}");
    }
    daemon.settled().await;
    // The requests sent to the erased visitors no longer name them.
    let events = wait_outcomes(&daemon, 3).await;
    let requests: Vec<&Value> = of_type(&events, "deskgate.outbound.sent")
        .into_iter()
        .filter(|e| e["data"]["purpose"] == "consent")
        .collect();
    assert_eq!(requests.len(), 2);
    for request in requests {
        let item_id = request["data"]["item_id"].as_str().unwrap();
        let url = daemon.url(&format!("/v1/control/outbound/{item_id}"));
        let item = control_get(&client, &url).await;
        assert_eq!(item["payload"]["psid"], "", "{item}");
        assert_eq!(item["payload"]["text"], "", "{item}");
    }

    // 7001 writes again: no consent any more, so asked again and kept.
    visitor(&client, &daemon, "7001", "m_again", "Re-bonjour", None).await;
    // 7002 agrees after the erasure: their erased message opens nothing.
    visitor(
        &client,
        &daemon,
        "7002",
        "m_kept_tap",
        "J'accepte",
        Some(&payload),
    )
    .await;
    let calls = graph_calls(&fake, 4).await;
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(calls[3]["recipient"]["id"], "7001");
    assert_eq!(calls[3]["message"]["text"], CONSENT_TEXT);
    let events = daemon.all_events().await;
    let tickets = ticket_events(&events);
    assert_eq!(external_ids(&tickets), ["m_agreed_1"], "{tickets:#?}");
    let consented = of_type(&events, "deskgate.contact.updated");
    assert_eq!(consented.len(), 2, "{consented:#?}");
    assert_ne!(
        consented[1]["subject"], contacts[1]["subject"],
        "a new contact"
    );
}

/// A new text version (the operator bumps `consent_version` and reloads): a visitor who agreed
/// to the old one is asked again, their next message kept meanwhile; a tap on the old button
/// is answered with the new text and kept nowhere; the tap on the new one lets the message join
/// their ticket.
#[tokio::test]
async fn a_new_text_version_asks_again() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, daemon) = start_page(dir.path(), &consent_lines("explicit")).await;
    let client = reqwest::Client::new();
    let old = write_and_agree(&client, (&daemon, &fake), "8080", ("m_v3_1", "m_v3_tap")).await;
    graph_calls(&fake, 2).await; // + the instant reply

    let text = std::fs::read_to_string(daemon.config_path()).unwrap();
    let text = text
        .replace("consent_version = 3", "consent_version = 4")
        .replace(CONSENT_TEXT, "Nouveau texte RGPD");
    std::fs::write(daemon.config_path(), text).unwrap();
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    test_kit::eventually("the reload", Duration::from_secs(10), || {
        let done = daemon.log().contains("configuration reloaded");
        async move { done }
    })
    .await;

    visitor(&client, &daemon, "8080", "m_v4_1", "Et ma commande ?", None).await;
    visitor(
        &client,
        &daemon,
        "8080",
        "m_old_tap",
        "J'accepte",
        Some(&old),
    )
    .await;
    let calls = graph_calls(&fake, 4).await;
    assert_eq!(calls.len(), 4, "{calls:?}");
    for call in &calls[2..] {
        assert_eq!(call["message"]["text"], "Nouveau texte RGPD");
        assert_ne!(call["message"]["quick_replies"][0]["payload"], json!(old));
    }
    let new = calls[3]["message"]["quick_replies"][0]["payload"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = daemon.all_events().await;
    assert_eq!(external_ids(&ticket_events(&events)), ["m_v3_1"]);

    visitor(
        &client,
        &daemon,
        "8080",
        "m_v4_tap",
        "J'accepte",
        Some(&new),
    )
    .await;
    let events = daemon.all_events().await;
    let tickets = ticket_events(&events);
    assert_eq!(external_ids(&tickets), ["m_v3_1", "m_v4_1"], "{tickets:#?}");
    assert_eq!(tickets[1]["type"], "deskgate.ticket.message_added");
    let updated = of_type(&events, "deskgate.contact.updated");
    let versions: Vec<&Value> = updated
        .iter()
        .map(|e| &e["data"]["consent"]["version"])
        .collect();
    assert_eq!(versions, [&json!(3), &json!(4)]);
    assert_eq!(
        graph_calls(&fake, 4).await.len(),
        4,
        "no instant reply again"
    );
}

/// check-config names the setting that is wrong: explicit consent without a text, an agree
/// label over Messenger's 20 characters.
#[test]
fn check_config_refuses_consent_without_text_or_with_a_long_label() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "http://127.0.0.1:9/v21.0").replace(
        "instant_reply = ",
        &format!(
            "consent = \"explicit\"\nconsent_agree_label = \"{}\"\ninstant_reply = ",
            "a".repeat(21)
        ),
    );
    let stderr = check_config_refuses(dir.path(), &text);
    for expected in [
        "outbound.messenger.fb.consent_text: must be 1 to 2000 characters when consent is not \"off\", not 0",
        "outbound.messenger.fb.consent_agree_label: must be 1 to 20 characters (Messenger's limit), not 21",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
}
