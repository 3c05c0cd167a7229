//! Messenger and WhatsApp end to end: the subscription handshake, signatures, batches of
//! several entries, echoes, reordered receipts, statuses for unknown messages, reply windows.

use crate::messaging_support::{
    kinds, meta_table, of_type, post_meta, sign, APP_SECRET, VERIFY_TOKEN,
};
use serde_json::{json, Value};
use test_kit::Daemon;

async fn start(dir: &std::path::Path) -> Daemon {
    let meta = meta_table(dir);
    let extra = format!(
        "[channels.fb]\nkind = \"messenger\"\n{meta}\n\n[channels.wa]\nkind = \"whatsapp\"\n{meta}\n"
    );
    Daemon::start(dir, &extra).await
}

fn messenger(entries: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "object": "page", "entry": entries })).unwrap()
}

#[tokio::test]
async fn the_subscription_handshake_answers_exactly_the_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();
    let get = |query: String| client.get(daemon.url(&format!("/hooks/wa?{query}"))).send();

    let response = get(format!(
        "hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "1158201444");

    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong-token&hub.challenge=1".to_owned(),
        format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
        "hub.challenge=1".to_owned(),
    ] {
        let response = get(query.clone()).await.unwrap();
        assert_eq!(response.status(), 403, "{query}");
    }
    let response = client
        .get(daemon.url("/hooks/nope?hub.mode=subscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_posts_are_refused_and_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();
    let body = messenger(vec![json!({ "id": "p1", "time": 1, "messaging": [
        { "sender": { "id": "u1" }, "recipient": { "id": "p1" }, "timestamp": 1700000000000u64,
          "message": { "mid": "m.1", "text": "hi" } }
    ]})]);
    let cases = [
        None,
        Some(sign("another-secret", &body)),
        Some("sha256=not-hex".to_owned()),
        // Signed over different bytes (re-serialised JSON is not the raw body).
        Some(sign(APP_SECRET, b"{}")),
    ];
    for signature in cases {
        let mut request = client
            .post(daemon.url("/hooks/fb"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{signature:?}");
    }
    let status: Value = client
        .get(daemon.url("/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["journal"]["durable_seq"], 0, "nothing was recorded");
}

/// Two entries: a customer message and the page's echo; then a delivery, a read, a postback,
/// a reaction and an opt-in.
fn messenger_batch(t0: u64) -> Vec<u8> {
    messenger(vec![
        json!({ "id": "p1", "time": t0, "messaging": [
            { "sender": { "id": "u1" }, "recipient": { "id": "p1" }, "timestamp": t0,
              "message": { "mid": "m.1", "text": "my order is late",
                           "attachments": [{ "type": "image", "payload": { "url": "https://cdn.example/1.jpg" } }] } },
            { "sender": { "id": "p1" }, "recipient": { "id": "u1" }, "timestamp": t0 + 1000,
              "message": { "mid": "m.2", "is_echo": true, "app_id": 42, "text": "sorry, checking" } },
        ]}),
        json!({ "id": "p1", "time": t0 + 2000, "messaging": [
            { "sender": { "id": "u1" }, "recipient": { "id": "p1" }, "timestamp": t0 + 2000,
              "delivery": { "mids": ["m.2"], "watermark": t0 + 1500 } },
            { "sender": { "id": "u1" }, "recipient": { "id": "p1" }, "timestamp": t0 + 3000,
              "read": { "watermark": t0 + 2500 } },
            { "sender": { "id": "u1" }, "recipient": { "id": "p1" }, "timestamp": t0 + 4000,
              "postback": { "title": "Track order", "payload": "TRACK" } },
            { "sender": { "id": "u1" }, "recipient": { "id": "p1" }, "timestamp": t0 + 5000,
              "reaction": { "mid": "m.2", "action": "react", "emoji": "👍", "reaction": "like" } },
            { "sender": { "id": "u1" }, "recipient": { "id": "p1" }, "timestamp": t0 + 6000,
              "optin": { "ref": "x" } },
        ]}),
    ])
}

#[tokio::test]
async fn a_batch_of_entries_becomes_one_item_each_with_echoes_outbound() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();
    let body = messenger_batch(1_700_000_000_000);
    let (status, answer) = post_meta(&client, &daemon, "fb", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        kinds(&answer),
        [
            "message",
            "echo",
            "delivery_status",
            "delivery_status",
            "postback",
            "reaction",
            "other"
        ]
    );
    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created");
    assert_eq!(
        created.len(),
        1,
        "one conversation, one ticket: {events:#?}"
    );
    let ticket = created[0]["subject"].as_str().unwrap();
    let first = &created[0]["data"];
    assert_eq!(first["message"]["direction"], "inbound");
    assert_eq!(
        first["message"]["attachments"][0]["id"],
        "https://cdn.example/1.jpg"
    );
    assert_eq!(first["message"]["sent_at"], "2023-11-14T22:13:20.000000Z");
    assert_eq!(
        first["conversation"]["reply_window_ends_at"], "2023-11-15T22:13:20.000000Z",
        "24 hours after the customer wrote"
    );
    assert_eq!(
        first["conversation"]["human_agent_window_ends_at"],
        "2023-11-21T22:13:20.000000Z"
    );
    let added = of_type(&events, "deskgate.ticket.message_added");
    let echo = added
        .iter()
        .find(|e| e["data"]["message"]["kind"] == "echo")
        .expect("the echo is on the conversation");
    assert_eq!(echo["subject"], ticket);
    assert_eq!(echo["data"]["message"]["direction"], "outbound");
    assert_eq!(
        echo["data"]["conversation"]["reply_window_ends_at"], "2023-11-15T22:13:20.000000Z",
        "the page's own message does not move the window"
    );
    let reaction = added
        .iter()
        .find(|e| e["data"]["message"]["kind"] == "reaction")
        .unwrap();
    assert_eq!(
        reaction["data"]["conversation"]["reply_window_ends_at"], "2023-11-15T22:13:25.000000Z",
        "a later customer interaction moves the window on"
    );
    let statuses = of_type(&events, "deskgate.message.delivery_status");
    let names: Vec<&str> = statuses
        .iter()
        .map(|e| e["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["delivered", "read"]);
    assert!(
        statuses.iter().all(|e| e["subject"] == ticket),
        "receipts land on the ticket"
    );
    assert_eq!(statuses[0]["data"]["message_ids"], json!(["m.2"]));
    assert_eq!(of_type(&events, "deskgate.channel.event").len(), 1);
    let contacts = of_type(&events, "deskgate.contact.created");
    assert_eq!(contacts.len(), 1, "the page is never a contact");
    assert_eq!(
        contacts[0]["data"]["contact"]["identities"],
        json!([{ "kind": "channel", "channel": "fb", "id": "psid:p1:u1" }])
    );
}

fn whatsapp(messages: Vec<Value>, statuses: Vec<Value>) -> Vec<u8> {
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550001111", "phone_number_id": "pn1" },
        "contacts": [{ "profile": { "name": "Ana Lima" }, "wa_id": "5511987654321" }],
        "messages": messages,
        "statuses": statuses,
    });
    let body = json!({ "object": "whatsapp_business_account", "entry": [
        { "id": "waba", "changes": [{ "field": "messages", "value": value }] }
    ]});
    serde_json::to_vec(&body).unwrap()
}

fn wa_text(id: &str, secs: u64, text: &str) -> Value {
    json!({ "from": "5511987654321", "id": id, "timestamp": secs.to_string(), "type": "text",
            "text": { "body": text } })
}

fn wa_status(id: &str, status: &str, secs: u64) -> Value {
    json!({ "id": id, "status": status, "timestamp": secs.to_string(), "recipient_id": "5511987654321" })
}

#[tokio::test]
async fn whatsapp_statuses_in_any_order_and_for_unknown_messages_are_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();

    // A status for a message deskgate never saw, before any conversation exists.
    let early = whatsapp(vec![], vec![wa_status("wamid.out1", "read", 1_700_000_100)]);
    let (status, answer) = post_meta(&client, &daemon, "wa", &early).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["items"][0]["external_id"], "wamid.out1:read");
    assert_eq!(
        answer["duplicate"], false,
        "recorded, and answered 200 as Meta expects"
    );

    // Then the customer writes; then the earlier status arrives late, and a failure.
    let body = whatsapp(
        vec![wa_text("wamid.in1", 1_700_000_000, "Olá")],
        vec![
            wa_status("wamid.out1", "delivered", 1_700_000_050),
            json!({ "id": "wamid.out2", "status": "failed", "timestamp": "1700000200",
                    "recipient_id": "5511987654321",
                    "errors": [{ "code": 131047, "title": "Re-engagement message" }] }),
        ],
    );
    let (status, answer) = post_meta(&client, &daemon, "wa", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        kinds(&answer),
        ["message", "delivery_status", "delivery_status"]
    );
    // The same read status again, in a different batch: nothing new.
    let (status, answer) = post_meta(&client, &daemon, "wa", &early).await;
    assert_eq!(
        (status, &answer["duplicate"]),
        (200, &json!(true)),
        "{answer}"
    );

    daemon.settled().await;
    let events = daemon.all_events().await;
    let statuses = of_type(&events, "deskgate.message.delivery_status");
    assert_eq!(statuses.len(), 3);
    assert_eq!(
        statuses[0]["subject"], "channel/wa/pn1:5511987654321",
        "no ticket yet"
    );
    assert_eq!(statuses[0]["data"]["ticket_id"], Value::Null);
    let ticket = of_type(&events, "deskgate.ticket.created")[0]["subject"].clone();
    assert_eq!(statuses[1]["subject"], ticket);
    assert_eq!(statuses[2]["data"]["status"], "failed");
    assert_eq!(statuses[2]["data"]["detail"]["errors"][0]["code"], 131047);
    let contact = &of_type(&events, "deskgate.contact.created")[0]["data"]["contact"];
    assert_eq!(contact["name"], "Ana Lima");
    assert_eq!(
        contact["identities"],
        json!([{ "kind": "phone", "number": "+5511987654321" }])
    );
    let created = &of_type(&events, "deskgate.ticket.created")[0]["data"];
    assert_eq!(
        created["conversation"]["reply_window_ends_at"],
        "2023-11-15T22:13:20.000000Z"
    );
    assert_eq!(
        created["conversation"]["human_agent_window_ends_at"],
        Value::Null
    );
}

/// A customer who hides their number behind a username: the message names them only by
/// Meta's business-scoped user id. It is a customer message (before, an unknown item with
/// no ticket), its contact has the user id as identity and the username as name, a status by
/// `recipient_user_id` joins its ticket, and a later payload with both phone and user id adds
/// the phone to the same contact.
#[tokio::test]
async fn a_whatsapp_username_customer_is_recorded_and_linked_to_their_phone_later() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();
    let user_id = "BR.1502576394655843";
    let change = |value: Value| {
        let mut value = value;
        value["messaging_product"] = json!("whatsapp");
        value["metadata"] =
            json!({ "display_phone_number": "15550001111", "phone_number_id": "pn1" });
        let body = json!({ "object": "whatsapp_business_account", "entry": [
            { "id": "waba", "changes": [{ "field": "messages", "value": value }] }
        ]});
        serde_json::to_vec(&body).unwrap()
    };
    let hidden = change(json!({
        "contacts": [{ "profile": { "username": "@ana.lima" }, "user_id": user_id }],
        "messages": [{ "from_user_id": user_id, "id": "wamid.u1", "timestamp": "1700000000",
                       "type": "text", "text": { "body": "sou eu" } }],
    }));
    let (status, answer) = post_meta(&client, &daemon, "wa", &hidden).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(kinds(&answer), ["message"], "{answer}");
    let delivered = change(json!({
        "statuses": [{ "id": "wamid.out7", "status": "delivered", "timestamp": "1700000060",
                       "recipient_user_id": user_id }],
    }));
    let (status, answer) = post_meta(&client, &daemon, "wa", &delivered).await;
    assert_eq!(status, 200, "{answer}");
    let both = change(json!({
        "contacts": [{ "profile": { "name": "Ana Lima", "username": "@ana.lima" },
                       "wa_id": "5511987654321", "user_id": user_id }],
        "messages": [{ "from": "5511987654321", "from_user_id": user_id, "id": "wamid.u2",
                       "timestamp": "1700000100", "type": "text", "text": { "body": "meu número" } }],
    }));
    let (status, answer) = post_meta(&client, &daemon, "wa", &both).await;
    assert_eq!(status, 200, "{answer}");

    daemon.settled().await;
    let events = daemon.all_events().await;
    let user = json!({ "kind": "channel", "channel": "wa", "id": format!("whatsapp_user:waba:{user_id}") });
    let contacts = of_type(&events, "deskgate.contact.created");
    assert_eq!(contacts.len(), 1, "one person: {contacts:?}");
    assert_eq!(contacts[0]["data"]["contact"]["identities"], json!([user]));
    assert_eq!(contacts[0]["data"]["contact"]["name"], "@ana.lima");
    let created = &of_type(&events, "deskgate.ticket.created")[0];
    let from = &created["data"]["message"]["from"];
    assert_eq!(from["identities"], json!([user]), "{created}");
    assert_eq!(created["data"]["message"]["text"], "sou eu");
    let statuses = of_type(&events, "deskgate.message.delivery_status");
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["subject"], created["subject"]);
    assert_eq!(statuses[0]["data"]["ticket_id"], created["subject"]);
    let updated = of_type(&events, "deskgate.contact.updated");
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert_eq!(updated[0]["subject"], contacts[0]["subject"]);
    assert_eq!(
        updated[0]["data"]["added_identities"],
        json!([{ "kind": "phone", "number": "+5511987654321" }])
    );
}

#[tokio::test]
async fn a_large_batch_is_recorded_item_by_item_and_malformed_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();
    let messages: Vec<Value> = (0..1000)
        .map(|i| wa_text(&format!("wamid.b{i}"), 1_700_000_000 + i, "batch"))
        .collect();
    let body = whatsapp(messages, vec![]);
    let (status, answer) = post_meta(&client, &daemon, "wa", &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["items"].as_array().unwrap().len(), 1000);
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(of_type(&events, "deskgate.ticket.created").len(), 1);
    assert_eq!(of_type(&events, "deskgate.ticket.message_added").len(), 999);

    let bad = b"{\"object\": \"page\", \"entry\": [";
    let response = client
        .post(daemon.url("/hooks/fb"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(APP_SECRET, bad))
        .body(bad.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("invalid JSON"),
        "{error}"
    );
}
