//! Website chat and web forms end to end: threading per visitor, signatures, the three form
//! encodings, required fields, the honeypot, double submits, file fields, rate limits and the
//! error answers of public endpoints.

use crate::messaging_support::{of_type, shared_secret_file, sign, SHARED_SECRET};
use serde_json::{json, Value};
use test_kit::Daemon;

async fn start(dir: &std::path::Path) -> Daemon {
    let secret = shared_secret_file(dir);
    let extra = format!(
        r#"
[channels.chat]
kind = "chat"
max_body_bytes = 4096

[channels.signed-chat]
kind = "chat"
chat = {{ secret_file = "{secret}" }}

[channels.contact]
kind = "form"
max_body_bytes = 65536

[channels.contact.form]
required = ["email", "message", "subject"]
hidden = ["utm_source"]
honeypot_field = "website"
defaults = {{ pipeline = "support", priority = "normal" }}
max_files = 2
max_file_bytes = 1024

[channels.contact.form.fields]
description = "message"

[channels.signed-form]
kind = "form"
form = {{ secret_file = "{secret}" }}

[channels.limited]
kind = "chat"
chat = {{ rate_limit = {{ per_minute = 1, burst = 3 }} }}

# The pipeline the form's defaults name (check-config refuses an unknown one).
[routing.pipelines.support]
label = "Support"
statuses = [
  {{ id = "new", label = "New", open = true }},
  {{ id = "closed", label = "Closed", open = false }},
]
triggers = {{ customer_replied = {{ target = "new" }}, agent_emailed = {{ target = "new" }} }}
"#,
        secret = secret.display()
    );
    Daemon::start(dir, &extra).await
}

async fn post(
    client: &reqwest::Client,
    daemon: &Daemon,
    channel: &str,
    content_type: &str,
    body: Vec<u8>,
    signature: Option<String>,
) -> (u16, Value) {
    let mut request = client
        .post(daemon.url(&format!("/hooks/{channel}")))
        .header("content-type", content_type)
        .body(body);
    if let Some(signature) = signature {
        request = request.header("x-deskgate-signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn json_body(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

#[tokio::test]
async fn chat_messages_thread_per_visitor_and_signed_channels_need_a_signature() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();
    let ct = "application/json";
    let first = json_body(
        json!({ "visitor_token": "v-1", "message_id": "c1", "text": "hello",
                                  "page_url": "https://shop.example/pricing" }),
    );
    assert_eq!(
        post(&client, &daemon, "chat", ct, first.clone(), None)
            .await
            .0,
        202
    );
    assert_eq!(
        post(&client, &daemon, "chat", ct, first, None).await.0,
        200,
        "a resend"
    );
    let named = json_body(
        json!({ "visitor_token": "v-1", "message_id": "c2", "text": "I'm Ana",
                                  "name": "Ana", "email": "Ana@Example.com" }),
    );
    assert_eq!(post(&client, &daemon, "chat", ct, named, None).await.0, 202);
    let other = json_body(json!({ "visitor_token": "v-2", "message_id": "c1", "text": "hi" }));
    assert_eq!(post(&client, &daemon, "chat", ct, other, None).await.0, 202);

    let (status, error) = post(
        &client,
        &daemon,
        "chat",
        ct,
        b"{\"visitor_token\": 5}".to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"].as_str().unwrap().contains("visitor_token"),
        "{error}"
    );

    let body = json_body(json!({ "visitor_token": "v-3", "message_id": "s1", "text": "signed" }));
    let (status, _) = post(&client, &daemon, "signed-chat", ct, body.clone(), None).await;
    assert_eq!(status, 401, "unsigned");
    let wrong = Some(sign("not-the-secret", &body));
    assert_eq!(
        post(&client, &daemon, "signed-chat", ct, body.clone(), wrong)
            .await
            .0,
        401
    );
    let right = Some(sign(SHARED_SECRET, &body));
    assert_eq!(
        post(&client, &daemon, "signed-chat", ct, body, right)
            .await
            .0,
        202
    );

    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created");
    assert_eq!(created.len(), 3, "one conversation per visitor and channel");
    let added = of_type(&events, "deskgate.ticket.message_added");
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["subject"], created[0]["subject"]);
    assert_eq!(
        created[0]["data"]["message"]["extra"]["page_url"],
        "https://shop.example/pricing"
    );
    let updated = of_type(&events, "deskgate.contact.updated");
    assert_eq!(
        updated[0]["data"]["added_identities"],
        json!([{ "kind": "email", "address": "ana@example.com" }]),
        "the visitor identified: the email joins the visitor's contact"
    );
}

fn multipart(boundary: &str, fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (name, file_name, content) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: text/plain\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test]
async fn forms_in_every_encoding_with_required_fields_honeypot_and_double_submits() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();

    let json_form = json_body(
        json!({ "email": "bo@example.com", "first_name": "Bo", "last_name": "Ek",
        "subject": "Refund", "message": "Please refund order 7", "utm_source": "ads",
        "priority": "high", "order": 7 }),
    );
    let (status, answer) = post(
        &client,
        &daemon,
        "contact",
        "application/json",
        json_form.clone(),
        None,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post(
        &client,
        &daemon,
        "contact",
        "application/json",
        json_form,
        None,
    )
    .await;
    assert_eq!(
        (status, &answer["duplicate"]),
        (200, &json!(true)),
        "a double click is one ticket"
    );

    let urlencoded =
        b"email=cy%40example.com&subject=Login&message=Cannot+log+in&submission_id=sub-9".to_vec();
    let ct = "application/x-www-form-urlencoded";
    let (status, answer) = post(&client, &daemon, "contact", ct, urlencoded.clone(), None).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["items"][0]["external_id"], "sub-9");
    assert_eq!(
        post(&client, &daemon, "contact", ct, urlencoded, None)
            .await
            .0,
        200
    );

    let boundary = "XyZ123";
    let body = multipart(
        boundary,
        &[
            ("email", "di@example.com"),
            ("subject", "Broken"),
            ("message", "See log"),
        ],
        &[("log", "app.log", b"line 1\nline 2\n")],
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (status, answer) = post(&client, &daemon, "contact", &ct, body, None).await;
    assert_eq!(status, 202, "{answer}");
    let big = multipart(
        boundary,
        &[
            ("email", "di@example.com"),
            ("subject", "s"),
            ("message", "m"),
        ],
        &[("log", "big.log", &[b'x'; 2048])],
    );
    let (status, error) = post(&client, &daemon, "contact", &ct, big, None).await;
    assert_eq!(status, 422, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("1024 bytes"),
        "{error}"
    );

    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created");
    assert_eq!(created.len(), 3, "json, urlencoded, multipart: {events:#?}");
    let json_message = &created[0]["data"]["message"];
    assert_eq!(json_message["subject"], "Refund");
    assert_eq!(json_message["text"], "Please refund order 7");
    assert_eq!(json_message["from"]["name"], "Bo Ek");
    assert_eq!(
        json_message["extra"]["ticket"],
        json!({ "pipeline": "support", "priority": "high" })
    );
    assert_eq!(
        json_message["extra"]["fields"],
        json!({ "order": "7", "utm_source": "ads" })
    );
    assert_eq!(
        json_message["extra"]["hidden_fields"],
        json!(["utm_source"])
    );
    let attachment = &created[2]["data"]["message"]["attachments"][0];
    assert_eq!(attachment["name"], "app.log");
    assert_eq!(attachment["size"], 14);
    let stored = std::fs::read(
        dir.path()
            .join("state/blobs")
            .join(attachment["id"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(stored, b"line 1\nline 2\n", "the file is stored as a blob");
}

#[tokio::test]
async fn forms_name_every_missing_field_drop_bots_and_check_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();

    let (status, error) = post(
        &client,
        &daemon,
        "contact",
        "application/x-www-form-urlencoded",
        b"first_name=Ed".to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        error["missing"],
        json!(["email", "message", "subject"]),
        "every missing field"
    );
    assert!(
        error["error"].as_str().unwrap().contains("email"),
        "{error}"
    );

    let bot = b"email=bot%40spam.example&subject=x&message=buy&website=http%3A%2F%2Fspam".to_vec();
    let (status, answer) = post(
        &client,
        &daemon,
        "contact",
        "application/x-www-form-urlencoded",
        bot,
        None,
    )
    .await;
    assert_eq!(status, 200, "bots are answered as if accepted: {answer}");
    assert_eq!(answer["items"], json!([]));

    let signed = json_body(json!({ "email": "ed@example.com", "description": "hi" }));
    assert_eq!(
        post(
            &client,
            &daemon,
            "signed-form",
            "application/json",
            signed.clone(),
            None
        )
        .await
        .0,
        401
    );
    let signature = Some(sign(SHARED_SECRET, &signed));
    assert_eq!(
        post(
            &client,
            &daemon,
            "signed-form",
            "application/json",
            signed,
            signature
        )
        .await
        .0,
        202
    );

    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created");
    assert_eq!(created.len(), 1, "only the signed submission: {events:#?}");
    assert_eq!(created[0]["data"]["message"]["channel"], "signed-form");
}

#[tokio::test]
async fn public_endpoints_are_rate_limited_and_refuse_bad_requests_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let client = reqwest::Client::new();
    let body = |i: u32| {
        json_body(json!({ "visitor_token": "v", "message_id": format!("r{i}"), "text": "x" }))
    };
    for i in 0..3 {
        assert_eq!(
            post(
                &client,
                &daemon,
                "limited",
                "application/json",
                body(i),
                None
            )
            .await
            .0,
            202
        );
    }
    let response = client
        .post(daemon.url("/hooks/limited"))
        .header("content-type", "application/json")
        .body(body(3))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Other channels keep their own quota.
    assert_eq!(
        post(&client, &daemon, "chat", "application/json", body(4), None)
            .await
            .0,
        202
    );

    let (status, _) = post(&client, &daemon, "chat", "text/plain", body(5), None).await;
    assert_eq!(status, 415);
    let (status, _) = post(
        &client,
        &daemon,
        "chat",
        "application/json",
        vec![b' '; 8192],
        None,
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = post(
        &client,
        &daemon,
        "nowhere",
        "application/json",
        body(6),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, error) = post(
        &client,
        &daemon,
        "contact",
        "application/json",
        b"[1,2".to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"].as_str().unwrap().contains("invalid JSON"),
        "{error}"
    );
    let (status, _) = post(
        &client,
        &daemon,
        "contact",
        "multipart/form-data",
        b"x".to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 400, "multipart without a boundary");
}
