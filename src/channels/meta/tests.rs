use std::path::PathBuf;

use bytes::Bytes;
use chrono::TimeZone;
use http::HeaderMap;
use serde_json::json;

use super::*;
use crate::identity;
use crate::model::MessageKind;
use crate::store::Blobs;

fn parse_with(kind: ChannelKind, payload: Value) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path()).unwrap();
    let headers = HeaderMap::new();
    let request = HookRequest {
        channel_id: "ch",
        headers: &headers,
        body: Bytes::new(),
        received_at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
        blobs: &blobs,
        region: Default::default(),
    };
    records(kind, &request, &payload)
}

fn inbound(record: &Record) -> &crate::model::Inbound {
    match record {
        Record::Inbound(inbound) => inbound,
        other => panic!("not a message: {other:?}"),
    }
}

fn event(record: &Record) -> &ChannelEvent {
    match record {
        Record::Event(event) => event,
        other => panic!("not an event: {other:?}"),
    }
}

#[test]
fn every_entry_and_item_of_a_messenger_batch_is_kept() {
    let item = |mid: &str| {
        json!({ "sender": { "id": "u" }, "recipient": { "id": "p" }, "timestamp": 1_700_000_000_123u64,
                "message": { "mid": mid, "text": mid, "quick_reply": { "payload": "QR" } } })
    };
    let payload = json!({ "object": "page", "entry": [
        { "id": "p", "messaging": [item("a"), item("b")] },
        { "id": "p", "messaging": [item("c")] },
    ]});
    let records = parse_with(ChannelKind::Messenger, payload);
    let ids: Vec<&str> = records
        .iter()
        .map(|r| inbound(r).external_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let first = inbound(&records[0]);
    assert_eq!(first.thread_key, "p:u");
    assert_eq!(first.extra["quick_reply"], "QR");
    assert_eq!(first.sent_at.unwrap().timestamp_millis(), 1_700_000_000_123);
    assert_eq!(
        first.sender.identities,
        [crate::identity::messenger("ch", "p", "u")],
        "the same identity the contacts' conflict guard scopes by page"
    );
}

#[test]
fn messenger_attachments_locations_and_fallbacks() {
    let payload = json!({ "object": "page", "entry": [{ "id": "p", "messaging": [
        { "sender": { "id": "u" }, "recipient": { "id": "p" }, "timestamp": 1,
          "message": { "mid": "m", "attachments": [
            { "type": "video", "payload": { "url": "https://v" } },
            { "type": "file", "payload": { "url": "https://f" } },
            { "type": "location", "payload": { "coordinates": { "lat": 1.5, "long": 2.5 } } },
            { "type": "fallback", "title": "A link", "url": "https://l", "payload": null },
          ] } }
    ]}]});
    let records = parse_with(ChannelKind::Messenger, payload);
    let message = inbound(&records[0]);
    let types: Vec<&str> = message
        .attachments
        .iter()
        .map(|a| a.content_type.as_str())
        .collect();
    assert_eq!(types, ["video/*", "application/octet-stream"]);
    assert_eq!(message.extra["location"]["lat"], 1.5);
    assert_eq!(message.extra["fallback"]["url"], "https://l");
}

#[test]
fn postbacks_without_a_mid_are_keyed_by_sender_time_and_payload() {
    let payload = json!({ "object": "page", "entry": [{ "id": "p", "messaging": [
        { "sender": { "id": "u" }, "recipient": { "id": "p" }, "timestamp": 5,
          "postback": { "title": "Start", "payload": "GET_STARTED" } }
    ]}]});
    let records = parse_with(ChannelKind::Messenger, payload);
    let postback = inbound(&records[0]);
    assert_eq!(postback.kind, MessageKind::Postback);
    assert_eq!(postback.external_id, "postback:u:5:GET_STARTED");
    assert_eq!(postback.text, "Start");
}

#[test]
fn whatsapp_reactions_edits_deletions_and_statuses() {
    let value = json!({
        "metadata": { "phone_number_id": "pn" },
        "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "15550001" }],
        "messages": [
            { "from": "15550001", "id": "w1", "timestamp": "100", "type": "reaction",
              "reaction": { "message_id": "w0" } },
            { "from": "15550001", "id": "w2", "timestamp": "101", "type": "edit",
              "edit": { "original_message_id": "w0", "message": { "type": "text", "text": { "body": "fixed" } } } },
            { "from": "15550001", "id": "w3", "timestamp": "102", "type": "revoke",
              "revoke": { "original_message_id": "w0" } },
            { "from": "15550001", "id": "w4", "timestamp": "103", "type": "document",
              "document": { "id": "media-1", "mime_type": "application/pdf", "filename": "a.pdf", "caption": "invoice" } },
        ],
        "statuses": [{ "id": "w9", "status": "played", "timestamp": "104", "recipient_id": "15550001" }],
    });
    let payload = json!({ "object": "whatsapp_business_account", "entry": [
        { "id": "waba", "changes": [{ "field": "messages", "value": value },
                                    { "field": "message_template_status_update", "value": { "event": "APPROVED" } }] }
    ]});
    let records = parse_with(ChannelKind::Whatsapp, payload);
    assert_eq!(records.len(), 6);
    let reaction = inbound(&records[0]);
    assert_eq!(reaction.kind, MessageKind::Reaction);
    assert_eq!(
        reaction.extra["removed"], true,
        "no emoji: the reaction was removed"
    );
    assert_eq!(reaction.sender.name.as_deref(), Some("Ana"));
    let edit = inbound(&records[1]);
    assert_eq!(
        (edit.text.as_str(), &edit.extra["edit_of"]),
        ("fixed", &json!("w0"))
    );
    let deleted = event(&records[2]);
    assert_eq!(
        (deleted.name.as_str(), &deleted.message_ids[..]),
        ("message_deleted", &["w0".to_owned()][..])
    );
    let document = inbound(&records[3]);
    assert_eq!(document.text, "invoice");
    assert_eq!(document.attachments[0].name.as_deref(), Some("a.pdf"));
    assert_eq!(document.sent_at.unwrap().timestamp(), 103);
    let status = event(&records[4]);
    assert_eq!(status.external_id, "w9:played");
    assert_eq!(status.kind, ChannelEventKind::DeliveryStatus);
    assert_eq!(status.thread_key.as_deref(), Some("pn:15550001"));
    assert_eq!(event(&records[5]).kind, ChannelEventKind::Other);
}

fn whatsapp_change(value: Value) -> Value {
    json!({ "object": "whatsapp_business_account", "entry": [
        { "id": "waba", "changes": [{ "field": "messages", "value": value }] }
    ]})
}

/// A customer who hides their number behind a username: no `from`, no `wa_id`; Meta's
/// business-scoped user id names them (`from_user_id`, `contacts[].user_id`,
/// `statuses[].recipient_user_id`).
#[test]
fn whatsapp_username_customers_are_known_by_their_business_scoped_user_id() {
    let payload = whatsapp_change(json!({
        "metadata": { "phone_number_id": "pn" },
        "contacts": [{ "profile": { "username": "@ana.lima" }, "user_id": "BR.1502576394655843" }],
        "messages": [{ "from_user_id": "BR.1502576394655843", "id": "w1", "timestamp": "100",
                       "type": "text", "text": { "body": "oi" } }],
        "statuses": [{ "id": "w0", "status": "delivered", "timestamp": "101",
                       "recipient_user_id": "BR.1502576394655843" }],
    }));
    let records = parse_with(ChannelKind::Whatsapp, payload);
    let message = inbound(&records[0]);
    let user = identity::whatsapp_user("ch", "waba", "BR.1502576394655843");
    assert_eq!(message.text, "oi");
    assert_eq!(message.thread_key, "pn:BR.1502576394655843");
    assert_eq!(message.sender.identities, std::slice::from_ref(&user));
    assert_eq!(
        message.sender.name.as_deref(),
        Some("@ana.lima"),
        "no profile name: the username names them"
    );
    assert_eq!(message.extra["username"], "@ana.lima");
    let status = event(&records[1]);
    assert_eq!(status.kind, ChannelEventKind::DeliveryStatus);
    assert_eq!(
        status.thread_key.as_deref(),
        Some("pn:BR.1502576394655843"),
        "joined to the conversation the message opened"
    );
    assert_eq!(status.sender.as_ref().unwrap().identities, [user]);
}

/// A payload that carries both the phone and the user id puts both identities on the message
/// (phone first), so contact resolution links them; the conversation stays keyed by phone.
#[test]
fn whatsapp_phone_and_user_id_together_are_both_identities() {
    let payload = whatsapp_change(json!({
        "metadata": { "phone_number_id": "pn" },
        "contacts": [{ "profile": { "name": "Ana", "username": "@ana.lima" },
                       "wa_id": "5511987654321", "user_id": "US.134912" }],
        "messages": [
            { "from": "5511987654321", "from_user_id": "US.134912", "id": "w1", "timestamp": "100",
              "type": "text", "text": { "body": "a" } },
            { "from": "5511987654321", "id": "w2", "timestamp": "101", "type": "text",
              "text": { "body": "b" } },
        ],
    }));
    let records = parse_with(ChannelKind::Whatsapp, payload);
    let both = [
        identity::whatsapp_id("5511987654321").unwrap(),
        identity::whatsapp_user("ch", "waba", "US.134912"),
    ];
    for record in &records {
        let message = inbound(record);
        assert_eq!(message.sender.identities, both, "{}", message.external_id);
        assert_eq!(message.thread_key, "pn:5511987654321");
        assert_eq!(message.sender.name.as_deref(), Some("Ana"));
    }
}

/// The only `contacts[]` entry completes a message's ids only when it names the same person.
#[test]
fn whatsapp_a_contact_entry_for_someone_else_adds_no_identity() {
    let payload = whatsapp_change(json!({
        "metadata": { "phone_number_id": "pn" },
        "contacts": [{ "profile": { "name": "Bo" }, "wa_id": "5511987654321", "user_id": "BR.2" }],
        "messages": [{ "from_user_id": "BR.1", "id": "w1", "timestamp": "100", "type": "text",
                       "text": { "body": "oi" } }],
    }));
    let records = parse_with(ChannelKind::Whatsapp, payload);
    assert_eq!(
        inbound(&records[0]).sender.identities,
        [identity::whatsapp_user("ch", "waba", "BR.1")]
    );
}

#[test]
fn unknown_shapes_are_kept_as_other_items_never_errors() {
    for payload in [
        json!({}),
        json!([1, 2]),
        json!({ "object": "page", "entry": [{ "id": 1 }] }),
        json!("x"),
    ] {
        for kind in [ChannelKind::Messenger, ChannelKind::Whatsapp] {
            let records = parse_with(kind, payload.clone());
            assert_eq!(records.len(), 1, "{payload}");
            assert_eq!(event(&records[0]).kind, ChannelEventKind::Other);
        }
    }
    assert!(
        parse_json(b"\xEF\xBB\xBF{}").is_ok(),
        "a byte-order mark is tolerated"
    );
    assert!(parse_json(b"{").is_err());
}

#[test]
fn the_handshake_needs_subscribe_and_the_exact_token() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path: PathBuf = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let toml = format!(
        "[channels.wa]\nkind = \"whatsapp\"\nmeta = {{ app_secret_file = {:?}, verify_token_file = {:?} }}\n",
        write("secret", "app-secret-123"),
        write("token", "verify-token-1\n"),
    );
    let config = crate::config::Config::parse(&toml).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let channel = &config.channels["wa"];
    let query = |mode: &str, token: &str| {
        vec![
            ("hub.mode".to_owned(), mode.to_owned()),
            ("hub.verify_token".to_owned(), token.to_owned()),
            ("hub.challenge".to_owned(), "42".to_owned()),
        ]
    };
    let answer = |q: Vec<(String, String)>| verify_subscription(channel, &q).unwrap();
    assert_eq!(
        answer(query("subscribe", "verify-token-1")),
        Some("42".to_owned())
    );
    assert_eq!(answer(query("subscribe", "verify-token-2")), None);
    assert_eq!(answer(query("subscribe", "verify-token-")), None);
    assert_eq!(answer(query("unsubscribe", "verify-token-1")), None);
}
