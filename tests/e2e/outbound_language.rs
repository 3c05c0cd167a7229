//! Automatic mail in the customer's language, through the real binary: a French mailbox's
//! acknowledgement and agents' From names reach the SMTP server (aiosmtpd) in French, a
//! channel's language comes before its mailbox's, `outbound.language` with the `company`
//! From-name mode, a Messenger visitor whose profile (from the fake Graph API, which checks
//! every call) is French gets the French instant reply while an unknown locale falls back, and
//! check-config names an unknown language by its path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::messaging_support::{meta_table, post_meta};
use crate::outbound_support::{control_post, control_toml, header, html_body, of_type, text_body};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use test_kit::smtpd::Smtpd;
use test_kit::{api_message, free_port, Daemon};

/// One mailbox answering the harness's `api` channel and `en_api` (whose own language is
/// English); `mailbox` is extra lines for the mailbox, `outbound` for `[outbound]`.
fn mail_config(dir: &std::path::Path, smtp_port: u16, outbound: &str, mailbox: &str) -> String {
    format!(
        "{control}[channels.en_api]\nkind = \"api\"\nlanguage = \"en\"\n\n\
         [outbound]\nretry_base_ms = 100\nretry_max_secs = 1\n{outbound}\n\n\
         [outbound.mailboxes.support]\naddress = \"support@acme.test\"\ncompany_name = \"Acme\"\n\
         channels = [\"api\", \"en_api\"]\nacknowledge_new_tickets = true\n{mailbox}\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"plain\"\n",
        control = control_toml(dir)
    )
}

/// The decoded Subject of a raw mail.
fn subject(raw: &[u8]) -> String {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    message.subject().unwrap_or_default().to_owned()
}

/// The mail sent to `to`, the `n`th of them (in arrival order).
fn mail_to<'m>(mails: &'m [Vec<u8>], to: &str, n: usize) -> &'m [u8] {
    let to_them: Vec<&Vec<u8>> = mails
        .iter()
        .filter(|m| header(m, "To").as_deref() == Some(to))
        .collect();
    to_them
        .get(n)
        .unwrap_or_else(|| panic!("no mail {n} to {to}"))
}

async fn post_api(client: &reqwest::Client, daemon: &Daemon, channel: &str, body: &Value) {
    let url = daemon.url(&format!("/hooks/{channel}"));
    let response = client.post(url).json(body).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
}

/// An agent's reply on the conversation of the `n`th ticket created; `key` is its
/// idempotency key.
async fn agent_reply(client: &reqwest::Client, daemon: &Daemon, n: usize, key: &str) {
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created");
    let conversation = created[n]["data"]["conversation"]["id"].as_str().unwrap();
    let url = daemon.url(&format!("/v1/control/conversations/{conversation}/replies"));
    let reply = json!({"agent": {"id": "a1", "name": "Alice Martin"}, "text": "C'est réglé."});
    let (status, body) = control_post(client, &url, Some(key), &reply).await;
    assert_eq!(status, 202, "{body}");
}

/// A mailbox with `language = "fr"`: its acknowledgement (subject, text, HTML) and the "from"
/// of an agent's From name are French; a channel whose own language is English gets English
/// from the same mailbox.
#[tokio::test]
async fn a_french_mailbox_writes_french_and_a_channel_language_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let config = mail_config(dir.path(), smtpd.port, "", "language = \"fr\"\n");
    let daemon = Daemon::start(dir.path(), &config).await;
    let client = reqwest::Client::new();

    let mut message = api_message("m1", "t1", "lea@example.com", "Mon imprimante fume.");
    message["from"]["name"] = json!("Léa Roux");
    message.as_object_mut().unwrap().remove("subject");
    post_api(&client, &daemon, "api", &message).await;
    let mails = smtpd.wait_for(1, Duration::from_secs(30)).await;
    let ack = mail_to(&mails, "lea@example.com", 0);
    assert_eq!(header(ack, "From").unwrap(), "Acme <support@acme.test>");
    assert_eq!(
        subject(ack),
        "[#1] Nous avons bien reçu votre message",
        "the French subject with the ticket's tag"
    );
    let text = text_body(ack);
    assert!(text.starts_with("Bonjour Léa Roux,"), "{text}");
    assert!(text.contains("Merci d'avoir écrit à Acme"), "{text}");
    assert!(html_body(ack).unwrap().contains("Bonjour Léa Roux"));

    agent_reply(&client, &daemon, 0, "fr-1").await;
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    let reply = mail_to(&mails, "lea@example.com", 1);
    assert_eq!(
        header(reply, "From").unwrap(),
        "\"Alice Martin chez Acme\" <support@acme.test>"
    );
    assert_eq!(subject(reply), "[#1] Re: votre message");

    let english = api_message("m2", "t2", "bo@example.com", "My printer smokes.");
    post_api(&client, &daemon, "en_api", &english).await;
    let mails = smtpd.wait_for(3, Duration::from_secs(30)).await;
    let ack = mail_to(&mails, "bo@example.com", 0);
    assert_eq!(subject(ack), "[#2] about t2");
    assert!(text_body(ack).starts_with("Hello,"), "{}", text_body(ack));
    agent_reply(&client, &daemon, 1, "en-1").await;
    let mails = smtpd.wait_for(4, Duration::from_secs(30)).await;
    let reply = mail_to(&mails, "bo@example.com", 1);
    assert_eq!(
        header(reply, "From").unwrap(),
        "\"Alice Martin from Acme\" <support@acme.test>"
    );
}

/// `outbound.language = "fr"` is the default of every mailbox and channel that names none,
/// and `from_name = "company"` sends an agent's reply under the company's name alone, with no
/// "chez" and no agent.
#[tokio::test]
async fn the_global_language_and_the_company_from_name_mode() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let config = mail_config(
        dir.path(),
        smtpd.port,
        "language = \"fr\"",
        "from_name = \"company\"\n",
    );
    let daemon = Daemon::start(dir.path(), &config).await;
    let client = reqwest::Client::new();

    post_api(
        &client,
        &daemon,
        "api",
        &api_message("c1", "t1", "ana@example.com", "Bonjour"),
    )
    .await;
    let mails = smtpd.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(subject(&mails[0]), "[#1] about t1");
    assert!(text_body(&mails[0]).starts_with("Bonjour,"));

    agent_reply(&client, &daemon, 0, "company-1").await;
    let mails = smtpd.wait_for(2, Duration::from_secs(30)).await;
    let reply = mail_to(&mails, "ana@example.com", 1);
    assert_eq!(header(reply, "From").unwrap(), "Acme <support@acme.test>");
    assert_eq!(subject(reply), "[#1] Re: about t1");
    assert!(header(reply, "Auto-Submitted").is_none());
}

const PAGE_ID: &str = "204857600";
const PAGE_TOKEN: &str = "EAAGlanguage-page-token";

/// Meta's User Profile API and Send API, for one page. It checks the token, the fields asked
/// for and the Send API payload, and records what passed.
#[derive(Clone, Default)]
struct Graph {
    /// PSIDs whose profile was asked for, in order.
    lookups: Arc<Mutex<Vec<String>>>,
    /// (PSID, text) of each message sent.
    sent: Arc<Mutex<Vec<(String, String)>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Graph {
    fn refuse(&self, problem: String) -> (StatusCode, Json<Value>) {
        self.problems.lock().unwrap().push(problem.clone());
        let error = json!({"error": {"message": problem, "type": "OAuthException", "code": 100}});
        (StatusCode::BAD_REQUEST, Json(error))
    }

    fn authorised(headers: &HeaderMap) -> bool {
        let token = headers.get("authorization").and_then(|v| v.to_str().ok());
        token == Some(&format!("Bearer {PAGE_TOKEN}"))
    }
}

/// Profiles by PSID as Meta answers them (`locale` needs the page's Advanced Access).
async fn user_profile(
    State(graph): State<Graph>,
    Path((version, psid)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let fields = query.iter().find(|(k, _)| k == "fields").map(|(_, v)| v);
    if version != "v21.0" || !Graph::authorised(&headers) {
        return graph.refuse(format!(
            "profile of {psid} on {version} without the page token"
        ));
    }
    if !fields.is_some_and(|f| f.split(',').any(|f| f == "locale")) {
        return graph.refuse(format!(
            "profile of {psid} without asking for locale: {query:?}"
        ));
    }
    graph.lookups.lock().unwrap().push(psid.clone());
    let (first, last, locale) = match psid.as_str() {
        "psid-lea" => ("Léa", "Roux", "fr_FR"),
        "psid-jonas" => ("Jonas", "Weber", "de_DE"),
        _ => return graph.refuse(format!("unknown user {psid}")),
    };
    let profile = json!({"first_name": first, "last_name": last, "locale": locale, "id": psid});
    (StatusCode::OK, Json(profile))
}

async fn send(
    State(graph): State<Graph>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if version != "v21.0" || node != PAGE_ID || !Graph::authorised(&headers) {
        return graph.refuse(format!(
            "send to {node} on {version} without the page token"
        ));
    }
    let psid = body["recipient"]["id"].as_str().unwrap_or_default();
    let text = body["message"]["text"].as_str();
    let (Some(text), "RESPONSE") = (text, body["messaging_type"].as_str().unwrap_or_default())
    else {
        return graph.refuse(format!("bad Send API payload: {body}"));
    };
    let mut sent = graph.sent.lock().unwrap();
    sent.push((psid.to_owned(), text.to_owned()));
    let answer = json!({"recipient_id": psid, "message_id": format!("m_{}", sent.len())});
    (StatusCode::OK, Json(answer))
}

async fn start_graph() -> (String, Graph) {
    let graph = Graph::default();
    let app = Router::new()
        .route("/{version}/{psid}", get(user_profile))
        .route("/{version}/{node}/messages", post(send))
        .with_state(graph.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v21.0"), graph)
}

/// A customer's text message on the page, written now.
fn visitor_message(psid: &str, mid: &str) -> Vec<u8> {
    let now = chrono::Utc::now().timestamp_millis();
    let item = json!({ "sender": { "id": psid }, "recipient": { "id": PAGE_ID },
        "timestamp": now, "message": { "mid": mid, "text": "bonjour" } });
    let entry = json!({ "id": PAGE_ID, "time": now, "messaging": [item] });
    serde_json::to_vec(&json!({ "object": "page", "entry": [entry] })).unwrap()
}

/// `fetch_profile`: each visitor's profile is asked for once; the name and locale go on the
/// contact (`deskgate.contact.created`), and the instant reply is in the visitor's language
/// when the page has it (`fr_FR` gets the French text) and in `outbound.language` when
/// deskgate has no such language (`de_DE` gets English).
#[tokio::test]
async fn a_messenger_visitor_gets_the_instant_reply_in_their_profile_language() {
    let dir = tempfile::tempdir().unwrap();
    let (base, graph) = start_graph().await;
    let token = dir.path().join("page-token");
    std::fs::write(&token, PAGE_TOKEN).unwrap();
    let config = format!(
        "[channels.fb]\nkind = \"messenger\"\n{meta}\n\n\
         [outbound]\ngraph_api_base_url = \"{base}\"\nretry_base_ms = 100\nretry_max_secs = 1\n\n\
         [outbound.messenger.fb]\npage_id = \"{PAGE_ID}\"\npage_access_token_file = \"{token}\"\n\
         fetch_profile = true\ninstant_reply = \"Thanks! An agent will answer soon.\"\n\
         instant_reply_translations = {{ fr = \"Merci ! Un conseiller vous répond bientôt.\" }}\n",
        meta = meta_table(dir.path()),
        token = token.display(),
    );
    let daemon = Daemon::start(dir.path(), &config).await;
    let client = reqwest::Client::new();

    for (psid, mid) in [
        ("psid-lea", "m.1"),
        ("psid-jonas", "m.2"),
        ("psid-lea", "m.3"),
    ] {
        let (status, answer) = post_meta(&client, &daemon, "fb", &visitor_message(psid, mid)).await;
        assert_eq!(status, 200, "{answer}");
    }
    test_kit::eventually("both instant replies", Duration::from_secs(30), || {
        let sent = Arc::clone(&graph.sent);
        async move { sent.lock().unwrap().len() >= 2 }
    })
    .await;
    daemon.settled().await;
    assert_eq!(*graph.problems.lock().unwrap(), Vec::<String>::new());
    let mut sent = graph.sent.lock().unwrap().clone();
    sent.sort();
    assert_eq!(
        sent,
        [
            (
                "psid-jonas".to_owned(),
                "Thanks! An agent will answer soon.".to_owned()
            ),
            (
                "psid-lea".to_owned(),
                "Merci ! Un conseiller vous répond bientôt.".to_owned()
            ),
        ]
    );
    assert_eq!(
        *graph.lookups.lock().unwrap(),
        ["psid-lea", "psid-jonas"],
        "one lookup per visitor"
    );
    let events = daemon.all_events().await;
    let contacts: Vec<(Value, Value)> = of_type(&events, "deskgate.contact.created")
        .iter()
        .map(|e| {
            let contact = &e["data"]["contact"];
            (contact["name"].clone(), contact["locale"].clone())
        })
        .collect();
    assert_eq!(
        contacts,
        [
            (json!("Léa Roux"), json!("fr_FR")),
            (json!("Jonas Weber"), json!("de_DE"))
        ]
    );
}

/// An unknown language is refused with its TOML path, wherever it is set.
#[test]
fn check_config_names_an_unknown_language_by_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[channels.web]\nkind = \"api\"\nlanguage = \"de\"\n\n\
         [outbound]\nlanguage = \"klingon\"\n\n\
         [outbound.mailboxes.support]\naddress = \"help@acme.test\"\ncompany_name = \"Acme\"\n\
         language = \"fr_FR\"\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\ntls = \"plain\"\n",
    )
    .unwrap();
    let check = test_kit::check_config(&path, None);
    assert!(!check.ok);
    let stderr = check.stderr;
    for (path, value) in [
        ("channels.web.language", "de"),
        ("outbound.language", "klingon"),
        ("outbound.mailboxes.support.language", "fr_FR"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{path}:")))
            .unwrap_or_else(|| panic!("no line for {path} in:\n{stderr}"));
        assert!(line.contains(value) && line.contains("`en`"), "{line}");
    }
}
