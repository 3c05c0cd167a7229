//! Contacts end to end against the real binary: one person writing by email, a web form,
//! WhatsApp and website chat ends as one contact, and the control API looks up, owns, merges
//! and erases contacts.

use crate::messaging_support::{meta_table, post_meta};
use serde_json::{json, Value};
use test_kit::Daemon;

const TOKEN: &str = "contacts-control-token-0123";

struct Api {
    daemon: Daemon,
    client: reqwest::Client,
}

impl Api {
    async fn post(&self, body: Value) {
        let response = self
            .client
            .post(self.daemon.url("/hooks/api"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    }

    /// Posts a raw body to a channel's hook; it must be accepted.
    async fn hook(&self, channel: &str, content_type: &str, body: Vec<u8>) {
        let response = self
            .client
            .post(self.daemon.url(&format!("/hooks/{channel}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!((200..300).contains(&status), "{channel}: {status} {text}");
    }

    async fn control(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth(TOKEN).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.control(self.client.get(self.daemon.url(path))).await
    }

    async fn events_of(&self, kind: &str) -> Vec<Value> {
        self.daemon.settled().await;
        let all = self.daemon.all_events().await;
        all.into_iter().filter(|e| e["type"] == kind).collect()
    }
}

fn message(id: &str, thread: &str, from: Value) -> Value {
    json!({ "external_id": id, "thread_id": thread, "from": from, "text": format!("text of {id}") })
}

async fn start(dir: &std::path::Path) -> Api {
    let token_file = dir.join("control.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let extra = format!(
        "[control]\ntoken_files = [\"{}\"]\n\n[contacts]\ndefault_region = \"US\"\n\n\
         [channels.support]\nkind = \"email\"\n\n[channels.web]\nkind = \"form\"\n\n\
         [channels.chat]\nkind = \"chat\"\n\n[channels.wa]\nkind = \"whatsapp\"\n{}\n\
         # An owner must be a user of the directory.\n\
         [routing.users.agent-7]\nname = \"Agent Seven\"\n",
        token_file.display(),
        meta_table(dir)
    );
    Api {
        daemon: Daemon::start(dir, &extra).await,
        client: reqwest::Client::new(),
    }
}

#[tokio::test]
async fn one_person_across_channels_is_one_contact_with_three_identities() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path()).await;
    // Writes to the team mailbox (an MTA pushing raw mail), spelling the address her way.
    let mail = "From: Ana Lima <Ana.Lima@Example.COM>\r\nTo: support@help.example\r\n\
                Subject: Printer\r\nMessage-ID: <ana-1@example.com>\r\n\r\nIt is on fire.\r\n";
    api.hook("support", "message/rfc822", mail.as_bytes().to_vec())
        .await;
    // Fills in the web form with the same address and her phone (a national number: the
    // default region applies).
    api.hook(
        "web",
        "application/x-www-form-urlencoded",
        b"email=ana.lima%40example.com&phone=%28415%29+555-0100&message=Any+news%3F".to_vec(),
    )
    .await;
    // Writes on WhatsApp: the `wa_id` is the phone on record.
    let whatsapp = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "waba-1",
        "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550000000", "phone_number_id": "pn-1" },
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "14155550100" }],
            "messages": [{ "from": "14155550100", "id": "wamid.ana-1", "timestamp": "1790000000",
                           "type": "text", "text": { "body": "Hello?" } }] } }] }] });
    let body = serde_json::to_vec(&whatsapp).unwrap();
    let (status, answer) = post_meta(&api.client, &api.daemon, "wa", &body).await;
    assert_eq!(status, 200, "{answer}");
    // Chats as a visitor nobody knows, then gives the same email.
    let chat = |id: &str, email: Option<&str>| {
        let mut message = json!({ "visitor_token": "visitor-7", "message_id": id, "text": id });
        if let Some(email) = email {
            message["email"] = json!(email);
        }
        serde_json::to_vec(&message).unwrap()
    };
    api.hook("chat", "application/json", chat("c1", None)).await;
    api.hook(
        "chat",
        "application/json",
        chat("c2", Some(" ANA.lima@example.com")),
    )
    .await;

    let created = api.events_of("deskgate.contact.created").await;
    assert_eq!(
        created.len(),
        2,
        "Ana, then the unknown visitor: {created:?}"
    );
    let ana = created[0]["subject"].as_str().unwrap().to_owned();
    let visitor = created[1]["subject"].as_str().unwrap().to_owned();
    let updated = api.events_of("deskgate.contact.updated").await;
    assert_eq!(updated.len(), 1, "the form added the phone: {updated:?}");
    assert_eq!(updated[0]["subject"], ana);
    assert_eq!(
        updated[0]["data"]["added_identities"],
        json!([{ "kind": "phone", "number": "+14155550100" }])
    );
    let merged = api.events_of("deskgate.contact.merged").await;
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(merged[0]["data"]["surviving"], ana);
    assert_eq!(merged[0]["data"]["absorbed"], json!([visitor]));
    assert!(api
        .events_of("deskgate.contact.merge_suggested")
        .await
        .is_empty());

    let (status, found) = api
        .get("/v1/control/contacts?email=ANA.LIMA%40example.com")
        .await;
    assert_eq!(status, 200, "{found}");
    let contact = &found["contact"];
    assert_eq!(contact["id"], ana);
    assert_eq!(contact["name"], "Ana Lima");
    assert_eq!(
        contact["identities"],
        json!([
            { "kind": "email", "address": "ana.lima@example.com" },
            { "kind": "phone", "number": "+14155550100" },
            { "kind": "channel", "channel": "chat", "id": "visitor:visitor-7" },
        ])
    );
    assert_eq!(
        contact["spellings"],
        json!({ "ana.lima@example.com": "Ana.Lima@Example.COM" }),
        "the address as she first wrote it is kept for display"
    );
    // The absorbed id still resolves; WhatsApp's form of the phone finds the same contact.
    for path in [
        format!("/v1/control/contacts/{visitor}"),
        "/v1/control/contacts?whatsapp=14155550100".to_owned(),
        "/v1/control/contacts?channel=chat&id=visitor:visitor-7".to_owned(),
    ] {
        let (status, body) = api.get(&path).await;
        assert_eq!(
            (status, &body["contact"]["id"]),
            (200, &json!(ana)),
            "{path}"
        );
    }
    // Every ticket, the chat's included, now belongs to Ana.
    let tickets = api.events_of("deskgate.ticket.message_added").await;
    let last = tickets.last().unwrap();
    assert_eq!(last["data"]["conversation"]["channel"], "chat");
    assert_eq!(last["data"]["ticket"]["contact_id"], ana);
    for created in api.events_of("deskgate.ticket.created").await {
        let channel = created["data"]["ticket"]["channel"].clone();
        let owner = created["data"]["ticket"]["contact_id"].clone();
        assert!(
            owner == json!(ana) || (channel == "chat" && owner == json!(visitor)),
            "{created}"
        );
    }
}

#[tokio::test]
async fn a_visitor_on_a_second_device_joins_the_contact_of_the_email_given() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path()).await;
    let chat = |token: &str, id: &str, email: Option<&str>| {
        let mut message = json!({ "visitor_token": token, "message_id": id, "text": id });
        if let Some(email) = email {
            message["email"] = json!(email);
        }
        serde_json::to_vec(&message).unwrap()
    };
    // A laptop, identified from the start; then a phone's browser, anonymous first.
    api.hook(
        "chat",
        "application/json",
        chat("laptop", "1", Some("bo@example.com")),
    )
    .await;
    api.hook("chat", "application/json", chat("phone", "1", None))
        .await;
    api.hook(
        "chat",
        "application/json",
        chat("phone", "2", Some("bo@example.com")),
    )
    .await;
    // A visitor token is not one-per-person: two of them never block the merge.
    let merged = api.events_of("deskgate.contact.merged").await;
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert!(api
        .events_of("deskgate.contact.merge_suggested")
        .await
        .is_empty());
    let (status, found) = api.get("/v1/control/contacts?email=bo%40example.com").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["contact"]["identities"],
        json!([
            { "kind": "channel", "channel": "chat", "id": "visitor:laptop" },
            { "kind": "email", "address": "bo@example.com" },
            { "kind": "channel", "channel": "chat", "id": "visitor:phone" },
        ])
    );
}

/// Two integration customer ids are two people even when one writes from the other's email:
/// the conflict guard merges nothing, files the message under the strongest identity and tells
/// the ticket store which contacts might be one.
#[tokio::test]
async fn conflicting_identities_are_suggested_for_a_merge_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path()).await;
    api.post(message(
        "g1",
        "t-g1",
        json!({ "external_id": "cust-1", "email": "ana@example.com" }),
    ))
    .await;
    api.post(message("g2", "t-g2", json!({ "external_id": "cust-2" })))
        .await;
    api.post(message(
        "g3",
        "t-g3",
        json!({ "external_id": "cust-2", "email": "ana@example.com" }),
    ))
    .await;
    let created = api.events_of("deskgate.contact.created").await;
    assert_eq!(created.len(), 2, "{created:?}");
    let (first, second) = (&created[0]["subject"], &created[1]["subject"]);
    assert!(api.events_of("deskgate.contact.merged").await.is_empty());
    let suggested = api.events_of("deskgate.contact.merge_suggested").await;
    assert_eq!(suggested.len(), 1, "{suggested:?}");
    assert_eq!(suggested[0]["subject"], *second, "filed under cust-2");
    assert_eq!(suggested[0]["data"]["candidates"], json!([first]));
}

#[tokio::test]
async fn the_control_api_sets_owners_merges_by_hand_and_erases() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = start(dir.path()).await;
    api.post(message("a1", "t-a", json!({ "email": "bo@example.com" })))
        .await;
    api.post(message("b1", "t-b", json!({ "external_id": "cust-9" })))
        .await;
    api.post(message("c1", "t-c", json!({ "email": "cy@example.com" })))
        .await;
    let created = api.events_of("deskgate.contact.created").await;
    let ids: Vec<String> = created
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    let (bo, cust) = (&ids[0], &ids[1]);

    // Owner.
    let url = api.daemon.url(&format!("/v1/control/contacts/{bo}/owner"));
    let (status, body) = api
        .control(api.client.put(&url).json(&json!({ "owner": "agent-7" })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["contact"]["owner"], "agent-7");
    let (_, body) = api.get(&format!("/v1/control/contacts/{bo}")).await;
    assert_eq!(body["contact"]["owner"], "agent-7");

    // Merge by hand, then the refusals.
    let url = api.daemon.url(&format!("/v1/control/contacts/{bo}/merge"));
    let (status, body) = api
        .control(api.client.post(&url).json(&json!({ "from": cust })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["absorbed"], json!([cust]));
    let (status, body) = api
        .control(api.client.post(&url).json(&json!({ "from": cust })))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    let (status, _) = api
        .control(
            api.client
                .post(&url)
                .json(&json!({ "from": "no-such-contact" })),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api.get("/v1/control/contacts/no-such-contact").await;
    assert_eq!(status, 404);
    let merged = api.events_of("deskgate.contact.merged").await;
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0]["data"]["manual"], true);

    // Erase, twice with the same Idempotency-Key: one erasure, the same answer.
    let url = api.daemon.url(&format!("/v1/control/contacts/{bo}"));
    let mut answers = Vec::new();
    for _ in 0..2 {
        let request = api
            .client
            .delete(&url)
            .header("idempotency-key", "erase-bo-1");
        answers.push(api.control(request).await);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert_eq!(answers[0].1["erased"]["messages"], 2);
    let erased = api.events_of("deskgate.contact.erased").await;
    assert_eq!(erased.len(), 1);
    assert_eq!(erased[0]["subject"], json!(bo));
    for path in [
        format!("/v1/control/contacts/{bo}"),
        format!("/v1/control/contacts/{cust}"),
        "/v1/control/contacts?email=bo@example.com".to_owned(),
    ] {
        assert_eq!(api.get(&path).await.0, 404, "{path}");
    }
    let again = api.control(api.client.delete(&url)).await;
    assert_eq!(again.0, 404);
    // The same address writing again is a new person to deskgate.
    api.post(message("a2", "t-a2", json!({ "email": "bo@example.com" })))
        .await;
    // The hook answers once the message is journaled; the contact exists once it is applied.
    api.daemon.settled().await;
    let (status, body) = api.get("/v1/control/contacts?email=bo@example.com").await;
    assert_eq!(status, 200);
    assert_ne!(body["contact"]["id"], json!(bo));

    // The journal keeps no body or identity of the erased contact's messages.
    api.daemon.settled().await;
    assert!(api.daemon.terminate().success());
    let store = deskgate::store::Store::open(&dir.path().join("state")).unwrap();
    let mut texts = std::collections::BTreeMap::new();
    for item in store.journal_read(0, u64::MAX, 100).unwrap() {
        if let Ok(deskgate::model::Record::Inbound(inbound)) = item.record {
            texts.insert(inbound.external_id.clone(), (inbound.text, inbound.sender));
        }
    }
    for erased in ["a1", "b1"] {
        let (text, sender) = &texts[erased];
        assert!(text.is_empty() && sender.identities.is_empty(), "{erased}");
    }
    for kept in ["c1", "a2"] {
        assert_eq!(texts[kept].0, format!("text of {kept}"));
    }
}

#[tokio::test]
async fn bad_control_requests_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path()).await;
    let url = api.daemon.url("/v1/control/contacts/x/merge");
    let (status, body) = api
        .control(api.client.post(&url).body(r#"{"from": 7}"#))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("from"), "{body}");
    let (status, body) = api.get("/v1/control/contacts?email=not-an-address").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("email"), "{body}");
    let (status, _) = api.get("/v1/control/contacts").await;
    assert_eq!(status, 400);
    let unauthorised = api
        .client
        .get(api.daemon.url("/v1/control/contacts/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
}
