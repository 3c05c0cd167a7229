//! Hostile and broken input at the HTTP edge, endpoint by endpoint: each case is a raw request
//! and the answer it must get (status and error message). None may panic the daemon, hold a
//! connection forever or leave an event behind, and none may block what comes after it: right
//! after every bad request a good one to the same endpoint must be accepted.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::messaging_support::{meta_table, shared_secret_file, sign, APP_SECRET, SHARED_SECRET};
use serde_json::{json, Value};
use test_kit::{raw_request, read_answer, Daemon, Tables};

const TOKEN: &str = "hostile-control-token-0123456789";

/// Every endpoint kind the table covers, and how to make a good request to it.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Api,
    Mail,
    Form,
    Chat,
    Messenger,
    Whatsapp,
    Control,
    Events,
}

/// One bad request and the answer it must get.
struct Case {
    name: &'static str,
    endpoint: Endpoint,
    request: Vec<u8>,
    status: u16,
    /// Must appear in the answer (the JSON error message, or the body).
    message: &'static str,
}

/// A raw HTTP/1.1 request with `content-length` of the body, closing the connection.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    request("POST", path, &[("content-type", content_type)], body)
}

/// A POST signed as the channel's secret signs it, in the channel's signature header.
fn signed(path: &str, header: &str, secret: &str, body: &[u8]) -> Vec<u8> {
    let signature = sign(secret, body);
    request(
        "POST",
        path,
        &[("content-type", "application/json"), (header, &signature)],
        body,
    )
}

fn meta(path: &str, body: &[u8]) -> Vec<u8> {
    signed(path, "x-hub-signature-256", APP_SECRET, body)
}

fn chat(body: &[u8]) -> Vec<u8> {
    signed("/hooks/chat", "x-deskgate-signature", SHARED_SECRET, body)
}

/// Headers that declare a body longer than the endpoint's limit, and no body.
fn declared(method: &str, path: &str, content_type: &str, length: u64) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-length: {length}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes()
}

fn control(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let auth = format!("Bearer {TOKEN}");
    request(
        method,
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        body,
    )
}

fn messenger_body(mid: &str, psid: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({ "object": "page", "entry": [{ "id": "p1", "time": 1, "messaging": [
            { "sender": { "id": psid }, "recipient": { "id": "p1" }, "timestamp": 1700000000000u64,
              "message": { "mid": mid, "text": "hello" } }
        ]}]}),
    )
    .unwrap()
}

fn whatsapp_body(wamid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "object": "whatsapp_business_account", "entry": [{ "id": "w1", "changes": [{
        "field": "messages", "value": { "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": "106540352242922" },
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "5511987654321" }],
            "messages": [{ "from": "5511987654321", "id": wamid, "timestamp": "1700000000",
                           "type": "text", "text": { "body": "hello" } }] } }] }] }))
    .unwrap()
}

fn mail(message_id: &str, body: &[u8]) -> Vec<u8> {
    let mut mail = format!(
        "From: Ana <ana@example.com>\r\nTo: support@example.test\r\nSubject: Hello\r\n\
         Message-ID: <{message_id}>\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
    )
    .into_bytes();
    mail.extend_from_slice(body);
    mail
}

fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])], close: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, content) in parts {
        let file = file
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    if close {
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    body
}

/// A good request to the endpoint, unique by `n`, and the (channel, external id) of the
/// message it makes (none for the control and events APIs).
fn good(endpoint: Endpoint, n: usize) -> (Vec<u8>, Option<(&'static str, String)>) {
    match endpoint {
        Endpoint::Api => {
            let body = json!({ "external_id": format!("good-{n}"), "thread_id": "t",
                "from": { "email": "ana@example.com" }, "text": "fine" });
            let request = post(
                "/hooks/api",
                "application/json",
                &serde_json::to_vec(&body).unwrap(),
            );
            (request, Some(("api", format!("good-{n}"))))
        }
        Endpoint::Mail => {
            let id = format!("good-{n}@example.com");
            let request = post("/hooks/mail", "message/rfc822", &mail(&id, b"fine"));
            (request, Some(("mail", id)))
        }
        Endpoint::Form => {
            let body = format!("submission_id=good-{n}&email=ana%40example.com&description=fine");
            let request = post(
                "/hooks/form",
                "application/x-www-form-urlencoded",
                body.as_bytes(),
            );
            (request, Some(("form", format!("good-{n}"))))
        }
        Endpoint::Chat => {
            let body =
                json!({ "visitor_token": "v1", "message_id": format!("good-{n}"), "text": "fine" });
            let request = chat(&serde_json::to_vec(&body).unwrap());
            (request, Some(("chat", format!("v1:good-{n}"))))
        }
        Endpoint::Messenger => {
            let mid = format!("m.good-{n}");
            let request = meta("/hooks/fb", &messenger_body(&mid, "u1"));
            (request, Some(("fb", mid)))
        }
        Endpoint::Whatsapp => {
            let wamid = format!("wamid.good-{n}");
            let request = meta("/hooks/wa", &whatsapp_body(&wamid));
            (request, Some(("wa", wamid)))
        }
        Endpoint::Control => (
            control(
                "PUT",
                &format!("/v1/control/teams/team-{n}"),
                br#"{"label": "Team"}"#,
            ),
            None,
        ),
        Endpoint::Events => (
            b"GET /v1/events?after=0&limit=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
                .to_vec(),
            None,
        ),
    }
}

async fn start(dir: &std::path::Path) -> Daemon {
    let meta = meta_table(dir);
    let secret = shared_secret_file(dir);
    let token = dir.join("control.token");
    std::fs::write(&token, TOKEN).unwrap();
    let unlimited = "rate_limit = { per_minute = 100000, burst = 10000 }";
    let extra = format!(
        r#"[control]
token_files = ["{token}"]

[journal]
max_batch = 256

[channels.bigapi]
kind = "api"

[channels.mail]
kind = "email"
max_body_bytes = 65536

[channels.form]
kind = "form"
max_body_bytes = 65536
form = {{ max_files = 1, max_file_bytes = 64, {unlimited} }}

[channels.signed-form]
kind = "form"
form = {{ secret_file = "{secret}", {unlimited} }}

[channels.chat]
kind = "chat"
max_body_bytes = 65536
chat = {{ secret_file = "{secret}", {unlimited} }}

[channels.fb]
kind = "messenger"
{meta}

[channels.wa]
kind = "whatsapp"
{meta}
"#,
        token = token.display(),
        secret = secret.display(),
    );
    let tables = Tables {
        server: "header_read_timeout_secs = 2\nbody_read_timeout_secs = 2\n",
        ..Tables::default()
    };
    Daemon::start_with(dir, tables, &extra).await
}

fn deep(depth: usize) -> Vec<u8> {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

fn deep_object(depth: usize) -> Vec<u8> {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)).into_bytes()
}

/// `name, endpoint, request => status, message;` rows, one line each.
macro_rules! table {
    ($($name:literal, $endpoint:ident, $request:expr => $status:literal, $message:expr;)*) => {
        vec![$(Case {
            name: $name,
            endpoint: Endpoint::$endpoint,
            request: $request,
            status: $status,
            message: $message,
        }),*]
    };
}

fn cases() -> Vec<Case> {
    let huge_array = format!(
        r#"{{"external_id":"m","thread_id":"t","from":{{"email":"a@b.co"}},"text":"x","subject":[{}0]}}"#,
        "0,".repeat(2_000)
    );
    let numbers = format!("[{}0]", "0,".repeat(20_000));
    let chat_array = format!(
        r#"{{"visitor_token":"v1","message_id":"x","text":[{}0]}}"#,
        "0,".repeat(20_000)
    );
    // Every junk entry is kept as an `other` item: more than a Meta batch ever holds (and than
    // this daemon's journal.max_batch of 256).
    let junk_entries =
        |n: usize| format!(r#"{{"object":"page","entry":[{}0]}}"#, "0,".repeat(n - 1));
    let deep_fields = format!(
        r#"{{"kind":"acknowledgement","template":"t","conversation_id":"c","fields":{}}}"#,
        String::from_utf8(deep_object(5_000)).unwrap()
    );
    let huge_label = format!(r#"{{"label":[{}0]}}"#, "0,".repeat(20_000));
    let over = |method, path, content_type| declared(method, path, content_type, 10_000_000);
    let signed_by = |path: &str, header: &str, secret: &str, content_type: &str, body: &[u8]| {
        let signature = sign(secret, body);
        request(
            "POST",
            path,
            &[("content-type", content_type), (header, &signature)],
            body,
        )
    };
    let chat_with = |signature: &str, body: &[u8]| {
        request(
            "POST",
            "/hooks/chat",
            &[
                ("content-type", "application/json"),
                ("x-deskgate-signature", signature),
            ],
            body,
        )
    };
    let fb_message = messenger_body("m.x", "u1");
    let wa_message = whatsapp_body("wamid.x");
    let wa_not_hex = request(
        "POST",
        "/hooks/wa",
        &[
            ("content-type", "application/json"),
            ("x-hub-signature-256", "sha256=zz"),
        ],
        &wa_message,
    );
    let hello = br#"{"visitor_token":"v1","message_id":"x","text":"hi"}"#;
    let blank_visitor = br#"{"visitor_token":" ","message_id":"x","text":"hi"}"#;
    let email = b"email=ana%40example.com";
    let urlencoded = "application/x-www-form-urlencoded";
    let boundary = "multipart/form-data; boundary=b";
    let unclosed = multipart("b", &[("email", None, b"ana@example.com")], false);
    let two_files = multipart("b", &[("a", Some("a"), b"1"), ("b", Some("b"), b"2")], true);
    let big_file = multipart("b", &[("a", Some("a.txt"), &[b'x'; 100])], true);
    let team = br#"{"label":"T"}"#;
    let no_token = request("PUT", "/v1/control/teams/t", &[], team);
    let wrong_token = request(
        "PUT",
        "/v1/control/teams/t",
        &[("authorization", "Bearer wrong")],
        team,
    );
    let handshake = "/hooks/fb?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1";
    let json = "application/json";
    table![
        // The API channel.
        "api: invalid UTF-8", Api, post("/hooks/api", json, b"{\"external_id\":\"\xff\xfe\"}") => 400, "invalid JSON";
        "api: deeply nested JSON over the limit", Api, post("/hooks/api", json, &deep(50_000)) => 413, "larger than this channel's limit of 4096 bytes";
        "api: deeply nested arrays within the limit", Api, post("/hooks/bigapi", json, &deep(5_000)) => 400, "invalid type: sequence";
        "api: deeply nested objects within the limit", Api, post("/hooks/bigapi", json, &deep_object(5_000)) => 400, "unknown field `a`";
        "api: a huge array in a field", Api, post("/hooks/api", json, huge_array.as_bytes()) => 400, "subject: invalid type: sequence";
        "api: a huge array as the body", Api, post("/hooks/bigapi", json, numbers.as_bytes()) => 400, "[0]: invalid type: integer";
        "api: JSON null", Api, post("/hooks/api", json, b"null") => 400, "invalid JSON";
        "api: declared length over the limit", Api, over("POST", "/hooks/api", json) => 413, "limit of 4096 bytes";
        "api: an unknown channel", Api, post("/hooks/nope", json, b"{}") => 404, "is configured";
        "api: a path outside the hooks", Api, post("/hooks/../../etc", json, b"{}") => 404, "no such endpoint";
        "api: a channel id that is not UTF-8", Api, post("/hooks/%00%ff", json, b"{}") => 400, "channel id in the URL";
        "api: a wrong method", Api, request("DELETE", "/hooks/api", &[], b"") => 405, "method not allowed";
        "api: no content type", Api, request("POST", "/hooks/api", &[], b"{}") => 415, "content type must be application/json";
        "api: a handshake on a channel without one", Api, request("GET", "/hooks/api?hub.mode=subscribe", &[], b"") => 404, "has no subscription handshake";
        // Email pushed by an MTA.
        "mail: a JSON content type", Mail, post("/hooks/mail", json, b"{}") => 415, "content type must be message/rfc822";
        "mail: declared length over the limit", Mail, over("POST", "/hooks/mail", "message/rfc822") => 413, "limit of 65536 bytes";
        "mail: a wrong method", Mail, request("PUT", "/hooks/mail", &[], b"x") => 405, "method not allowed";
        // Web forms, in all three encodings.
        "form json: invalid UTF-8", Form, post("/hooks/form", json, b"{\"email\":\"\xff\"}") => 400, "invalid JSON";
        "form json: deeply nested", Form, post("/hooks/form", json, &deep(5_000)) => 400, "recursion limit exceeded";
        "form json: a huge array instead of fields", Form, post("/hooks/form", json, numbers.as_bytes()) => 400, "must be an object of fields";
        "form urlencoded: bytes that are not UTF-8 in the email", Form, post("/hooks/form", urlencoded, b"email=%ff%fe&description=x") => 422, "is not an email address";
        "form urlencoded: declared length over the limit", Form, over("POST", "/hooks/form", urlencoded) => 413, "limit of 65536 bytes";
        "form multipart: no boundary", Form, post("/hooks/form", "multipart/form-data", b"x") => 400, "multipart:";
        "form multipart: cut off before the closing boundary", Form, post("/hooks/form", boundary, &unclosed) => 400, "multipart:";
        "form multipart: too many files", Form, post("/hooks/form", boundary, &two_files) => 422, "at most 1 files per submission";
        "form multipart: a file over the limit", Form, post("/hooks/form", boundary, &big_file) => 422, "files may be at most 64 bytes";
        "form: a content type forms do not use", Form, post("/hooks/form", "text/plain", b"email=a") => 415, "content type must be application/json or";
        "form: a missing signature", Form, post("/hooks/signed-form", urlencoded, email) => 401, "missing x-deskgate-signature header";
        "form: a wrong signature", Form, signed_by("/hooks/signed-form", "x-deskgate-signature", "not-it", urlencoded, email) => 401, "does not match the body";
        // Website chat (signed).
        "chat: a missing signature", Chat, post("/hooks/chat", json, hello) => 401, "missing x-deskgate-signature header";
        "chat: a malformed signature", Chat, chat_with("md5=abc", hello) => 401, "must be sha256=<hex digest>";
        "chat: signed over other bytes", Chat, chat_with(&sign(SHARED_SECRET, b"{}"), hello) => 401, "does not match the body";
        "chat: invalid UTF-8", Chat, chat(b"{\"visitor_token\":\"\xff\"}") => 400, "invalid JSON";
        "chat: deeply nested JSON", Chat, chat(&deep(5_000)) => 400, "invalid type: sequence";
        "chat: a huge array as the text", Chat, chat(chat_array.as_bytes()) => 400, "text: invalid type: sequence";
        "chat: an empty visitor token", Chat, chat(blank_visitor) => 422, "visitor_token: must be 1 to 512 bytes";
        "chat: declared length over the limit", Chat, over("POST", "/hooks/chat", json) => 413, "limit of 65536 bytes";
        // Messenger and WhatsApp (signed by Meta).
        "messenger: a missing signature", Messenger, post("/hooks/fb", json, &fb_message) => 401, "missing x-hub-signature-256 header";
        "messenger: another app's signature", Messenger, signed_by("/hooks/fb", "x-hub-signature-256", "other", json, &fb_message) => 401, "does not match the body";
        "messenger: invalid UTF-8, signed", Messenger, meta("/hooks/fb", b"{\"object\":\"\xff\"}") => 400, "invalid JSON";
        "messenger: deeply nested JSON, signed", Messenger, meta("/hooks/fb", &deep(5_000)) => 400, "recursion limit exceeded";
        "messenger: more entries than Meta ever sends, signed", Messenger, meta("/hooks/fb", junk_entries(20_000).as_bytes()) => 413, "carries 20000 items; one request may carry at most 1000";
        "messenger: as many entries as Meta sends, signed", Messenger, meta("/hooks/fb", junk_entries(1000).as_bytes()) => 200, "\"kind\":\"other\"";
        "messenger: a handshake with the wrong token", Messenger, request("GET", handshake, &[], b"") => 403, "hub.verify_token must match";
        "messenger: a handshake on an unknown channel", Messenger, request("GET", "/hooks/nope?hub.mode=subscribe", &[], b"") => 404, "is configured";
        "messenger: a wrong method", Messenger, request("PATCH", "/hooks/fb", &[], b"") => 405, "method not allowed";
        "whatsapp: a missing signature", Whatsapp, post("/hooks/wa", json, &wa_message) => 401, "missing x-hub-signature-256 header";
        "whatsapp: a signature that is not hex", Whatsapp, wa_not_hex => 401, "must be sha256=<hex digest>";
        "whatsapp: invalid UTF-8 after a byte-order mark, signed", Whatsapp, meta("/hooks/wa", b"\xef\xbb\xbf{\"entry\":\"\xc3\x28\"}") => 400, "invalid JSON";
        "whatsapp: declared length over the limit", Whatsapp, over("POST", "/hooks/wa", json) => 413, "limit of 1048576 bytes";
        // The control API.
        "control: no token", Control, no_token => 401, "needs a valid bearer token";
        "control: a wrong token", Control, wrong_token => 401, "needs a valid bearer token";
        "control: invalid UTF-8", Control, control("PUT", "/v1/control/teams/t", b"{\"label\":\"\xff\"}") => 400, "label: invalid unicode code point";
        "control: deeply nested JSON", Control, control("POST", "/v1/control/outbound/automatic", deep_fields.as_bytes()) => 400, "recursion limit exceeded";
        "control: a huge array where a string goes", Control, control("PUT", "/v1/control/teams/t", huge_label.as_bytes()) => 400, "label: invalid type: sequence";
        "control: declared length over the limit", Control, over("PUT", "/v1/control/teams/t", json) => 413, "larger than the control API's limit of 2097152 bytes";
        "control: a path parameter of the wrong type", Control, control("POST", "/v1/control/quarantine/abc/retry", b"") => 400, "Cannot parse `abc`";
        "control: a query parameter of the wrong type", Control, control("GET", "/v1/control/quarantine?after=x", b"") => 400, "after: invalid digit";
        "control: an unknown endpoint", Control, control("GET", "/v1/control/nope", b"") => 404, "no such endpoint";
        "control: a wrong method", Control, control("DELETE", "/v1/control/quarantine", b"") => 405, "method not allowed";
        // The events API.
        "events: a bad query", Events, request("GET", "/v1/events?after=-1&limit=x", &[], b"") => 400, "after: must be a whole number";
        "events: a position past u64", Events, request("GET", "/v1/events?after=99999999999999999999999", &[], b"") => 400, "after: must be a whole number from 0 to 18446744073709551615";
        "events: an unknown parameter", Events, request("GET", "/v1/events?since=1", &[], b"") => 400, "since: unknown parameter";
        "events: a wrong method", Events, request("POST", "/v1/events", &[("content-type", json)], b"{}") => 405, "method not allowed";
        "events: declared length over the limit", Events, over("GET", "/v1/events", json) => 413, "the control API's limit";
    ]
}

/// The status code of a raw answer, 0 when there was none.
fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Sends the good request for `endpoint`; it must be accepted at once.
fn expect_good(
    addr: SocketAddr,
    endpoint: Endpoint,
    n: usize,
    after: &str,
) -> Option<(&'static str, String)> {
    let (request, made) = good(endpoint, n);
    let started = Instant::now();
    let answer = raw_request(addr, &request, Duration::from_secs(10));
    assert!(
        (200..300).contains(&status_of(&answer)),
        "a good {endpoint:?} request right after {after:?} was not accepted: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a good {endpoint:?} request after {after:?} waited {:?}",
        started.elapsed()
    );
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_bad_requests_as_expected_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let mut made = HashSet::new();
    let mut wrong = Vec::new();
    for (n, case) in cases().into_iter().enumerate() {
        let answer = raw_request(daemon.addr, &case.request, Duration::from_secs(10));
        let status = status_of(&answer);
        let json_error = answer.contains("\"code\":\"") && answer.contains("\"error\":\"");
        if status != case.status || !answer.contains(case.message) || (status >= 400 && !json_error)
        {
            wrong.push(format!(
                "{}: expected {} with {:?}, got {answer:?}",
                case.name, case.status, case.message
            ));
        }
        made.extend(expect_good(daemon.addr, case.endpoint, n, case.name));
    }
    assert!(
        wrong.is_empty(),
        "answers not as expected:\n{}",
        wrong.join("\n")
    );
    // Not HTTP at all: hyper answers 400 and closes; the next client is served.
    let garbage = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n";
    let answer = raw_request(daemon.addr, garbage, Duration::from_secs(10));
    assert_eq!(status_of(&answer), 400, "{answer}");
    made.extend(expect_good(daemon.addr, Endpoint::Api, 9999, "garbage"));

    daemon.settled().await;
    let events = daemon.all_events().await;
    for event in &events {
        if let Some(message) = event["data"].get("message") {
            let key = (
                message["channel"].as_str().unwrap(),
                message["external_id"].as_str().unwrap().to_owned(),
            );
            assert!(made.contains(&key), "a bad request left an event: {event}");
        }
    }
    let messages = events
        .iter()
        .filter(|e| e["data"].get("message").is_some())
        .count();
    assert_eq!(
        messages,
        made.len(),
        "every good request made one message event"
    );
    let health = reqwest::get(daemon.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "still serving after all of it");
}

/// Sends `request`, half-closes the connection and reads the answer.
fn truncated(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_are_never_accepted_on_any_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let cut = |path: &str, content_type: &str, extra: &str, start: &[u8]| {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\n{extra}content-length: 1000\r\n\r\n"
        )
        .into_bytes();
        request.extend_from_slice(start);
        request
    };
    let auth = format!("authorization: Bearer {TOKEN}\r\n");
    let signature = format!("x-hub-signature-256: {}\r\n", sign(APP_SECRET, b"{\"obj"));
    let cases = [
        (
            Endpoint::Api,
            cut("/hooks/api", "application/json", "", b"{\"exte"),
        ),
        (
            Endpoint::Mail,
            cut("/hooks/mail", "message/rfc822", "", b"From: a@b.c\r\n"),
        ),
        (
            Endpoint::Form,
            cut(
                "/hooks/form",
                "application/x-www-form-urlencoded",
                "",
                b"email=a",
            ),
        ),
        (
            Endpoint::Chat,
            cut("/hooks/chat", "application/json", "", b"{\"visitor"),
        ),
        (
            Endpoint::Messenger,
            cut("/hooks/fb", "application/json", &signature, b"{\"obj"),
        ),
        (
            Endpoint::Whatsapp,
            cut("/hooks/wa", "application/json", &signature, b"{\"obj"),
        ),
        (
            Endpoint::Control,
            cut("/v1/control/teams/t", "application/json", &auth, b"{\"lab"),
        ),
    ];
    for (n, (endpoint, request)) in cases.into_iter().enumerate() {
        let answer = truncated(daemon.addr, &request);
        assert!(
            !answer.starts_with("HTTP/1.1 2"),
            "{endpoint:?}: a truncated body is never accepted: {answer}"
        );
        expect_good(daemon.addr, endpoint, 1000 + n, "a truncated body");
    }
    daemon.settled().await;
    let status: Value = reqwest::get(daemon.url("/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Only the good requests were journaled (the control API journals its own).
    assert_eq!(status["journal"]["durable_seq"], 7, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_signed_payloads_are_duplicates_with_no_second_effect() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;
    let chat_body = br#"{"visitor_token":"v9","message_id":"m1","text":"hello"}"#;
    let payloads = [
        (
            "messenger",
            meta("/hooks/fb", &messenger_body("m.replay", "u9")),
        ),
        (
            "whatsapp",
            meta("/hooks/wa", &whatsapp_body("wamid.replay")),
        ),
        ("chat", chat(chat_body)),
    ];
    for (what, payload) in payloads {
        let first = raw_request(daemon.addr, &payload, Duration::from_secs(10));
        assert!((200..300).contains(&status_of(&first)), "{what}: {first}");
        assert!(first.contains("\"duplicate\":false"), "{what}: {first}");
        daemon.settled().await;
        let before = daemon.all_events().await.len();
        let again = raw_request(daemon.addr, &payload, Duration::from_secs(10));
        assert_eq!(status_of(&again), 200, "{what}: {again}");
        assert!(
            again.contains("\"duplicate\":true"),
            "{what}: the replay is a duplicate: {again}"
        );
        daemon.settled().await;
        assert_eq!(
            daemon.all_events().await.len(),
            before,
            "{what}: the replay had an effect"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_never_hold_up_others() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path()).await;

    // Slow headers: the connection is closed without an answer after the header timeout,
    // and meanwhile everyone else is served.
    let started = Instant::now();
    let mut stream = TcpStream::connect(daemon.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /hooks/api HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    expect_good(daemon.addr, Endpoint::Api, 1, "slow headers");
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "headers timed out"
    );

    // Slow bodies: 408 after the body timeout, naming it, on hooks and the control API alike.
    let auth = format!("authorization: Bearer {TOKEN}\r\n");
    let signature = format!("x-hub-signature-256: {}\r\n", sign(APP_SECRET, b"{}"));
    let slow = [
        (Endpoint::Api, "/hooks/api", String::new()),
        (Endpoint::Form, "/hooks/form", String::new()),
        (Endpoint::Whatsapp, "/hooks/wa", signature),
        (Endpoint::Control, "/v1/control/teams/t", auth),
    ];
    for (n, (endpoint, path, extra)) in slow.into_iter().enumerate() {
        let started = Instant::now();
        let mut stream = TcpStream::connect(daemon.addr).unwrap();
        stream
            .write_all(
                format!(
                    "PUT {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}content-length: 1000\r\n\r\n{{"
                )
                .replace("PUT /hooks", "POST /hooks")
                .as_bytes(),
            )
            .unwrap();
        expect_good(daemon.addr, endpoint, 10 + n, "a slow body");
        // Read for longer than the deadline below, so that a late answer fails as late (with
        // its time) rather than as no answer at all.
        let (answer, ended) = read_answer(stream, Duration::from_secs(30));
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{endpoint:?}: after {:?} the connection {ended}; answer: {answer:?}",
            started.elapsed()
        );
        assert!(
            answer.contains("did not arrive within 2 seconds"),
            "{answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{endpoint:?}: the 408 came after {:?}",
            started.elapsed()
        );
    }
}
