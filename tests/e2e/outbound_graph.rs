//! Agents' replies on Messenger, WhatsApp and chat, through the real binary, against a small
//! fake of Meta's Graph API on loopback (the one fake allowed: Meta cannot run here). The fake
//! checks the path, the token, the payload and the messaging type/tag, and answers as Meta
//! documents, errors included.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::outbound_support::{control_post, control_toml, of_type};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use test_kit::Daemon;

pub(crate) const PAGE_ID: &str = "104857600";
const PAGE_TOKEN: &str = "EAAGpage-token";
const PHONE_ID: &str = "5550001";
const WA_TOKEN: &str = "EAAGwhatsapp-token";

#[derive(Clone, Default)]
pub(crate) struct Fake {
    /// Every request that passed the checks: (node, body).
    pub(crate) seen: Arc<Mutex<Vec<(String, Value)>>>,
    /// Problems with what deskgate sent; the test fails if any.
    pub(crate) problems: Arc<Mutex<Vec<String>>>,
    /// WhatsApp calls answered with a transient outage so far.
    outages: Arc<Mutex<u32>>,
    /// Messenger Profile API calls that passed the checks: (method, body).
    profile: Arc<Mutex<Vec<(String, Value)>>>,
    /// Profile calls to answer with a transient outage first.
    profile_outages: Arc<Mutex<u32>>,
}

fn meta_error(
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    message: &str,
) -> (StatusCode, Json<Value>) {
    let mut error =
        json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"});
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    (status, Json(json!({ "error": error })))
}

type Answer = (StatusCode, Json<Value>);

impl Fake {
    fn problem(&self, p: String) -> Answer {
        self.problems.lock().unwrap().push(p.clone());
        meta_error(StatusCode::BAD_REQUEST, 100, None, &p)
    }
}

async fn messages(
    State(fake): State<Fake>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    if version != "v21.0" {
        return fake.problem(format!("unexpected API version {version}"));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let expected = if node == PAGE_ID {
        PAGE_TOKEN
    } else {
        WA_TOKEN
    };
    if token != format!("Bearer {expected}") {
        return meta_error(
            StatusCode::UNAUTHORIZED,
            190,
            None,
            "Invalid OAuth access token.",
        );
    }
    match node.as_str() {
        PAGE_ID => messenger(&fake, body),
        PHONE_ID => whatsapp(&fake, body),
        _ => fake.problem(format!("unknown node {node}")),
    }
}

/// The Messenger Profile API (`me` is the page the token belongs to): `greeting` as
/// `[{locale, text}]` with a `default` locale of at most 160 characters; DELETE with
/// `{"fields": ["greeting"]}`.
async fn profile_set(
    State(fake): State<Fake>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    profile(fake, version, headers, "POST", body)
}

async fn profile_delete(
    State(fake): State<Fake>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    profile(fake, version, headers, "DELETE", body)
}

fn profile(fake: Fake, version: String, headers: HeaderMap, method: &str, body: Value) -> Answer {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if version != "v21.0" || token != format!("Bearer {PAGE_TOKEN}") {
        return fake.problem(format!("profile call on {version} with {token:?}"));
    }
    let ok = match method {
        "POST" => {
            let greeting = &body["greeting"];
            greeting.as_array().is_some_and(|g| g.len() == 1)
                && greeting[0]["locale"] == "default"
                && greeting[0]["text"]
                    .as_str()
                    .is_some_and(|t| (1..=160).contains(&t.chars().count()))
        }
        _ => body == json!({ "fields": ["greeting"] }),
    };
    if !ok {
        return fake.problem(format!("bad profile {method}: {body}"));
    }
    {
        let mut outages = fake.profile_outages.lock().unwrap();
        if *outages > 0 {
            *outages -= 1;
            return meta_error(
                StatusCode::SERVICE_UNAVAILABLE,
                2,
                None,
                "Service temporarily unavailable",
            );
        }
    }
    fake.profile.lock().unwrap().push((method.to_owned(), body));
    (StatusCode::OK, Json(json!({ "result": "success" })))
}

/// The Send API: `recipient.id`/// The Send API: `recipient.id`, `messaging_type` RESPONSE without a tag or MESSAGE_TAG with
/// HUMAN_AGENT, `message.text`, and quick replies as Meta documents them when there are any
/// (1 to 13, each `content_type` `text` with a title of 1 to 20 characters and a payload of 1
/// to 1,000).
fn messenger(fake: &Fake, body: Value) -> Answer {
    let psid = body["recipient"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let tag_ok = match body["messaging_type"].as_str().unwrap_or_default() {
        "RESPONSE" => body.get("tag").is_none(),
        "MESSAGE_TAG" => body["tag"] == "HUMAN_AGENT",
        _ => false,
    };
    let quick_ok = match body["message"].get("quick_replies") {
        None => true,
        Some(Value::Array(replies)) => {
            (1..=13).contains(&replies.len())
                && replies.iter().all(|reply| {
                    let title = reply["title"].as_str().map_or(0, |t| t.chars().count());
                    let payload = reply["payload"].as_str().map_or(0, str::len);
                    reply["content_type"] == "text"
                        && (1..=20).contains(&title)
                        && (1..=1000).contains(&payload)
                })
        }
        Some(_) => false,
    };
    if psid.is_empty() || !tag_ok || !quick_ok || body["message"]["text"].as_str().is_none() {
        return fake.problem(format!("bad Send API payload: {body}"));
    }
    let mut seen = fake.seen.lock().unwrap();
    seen.push((PAGE_ID.to_owned(), body.clone()));
    if psid == "psid-window-closed" {
        let message = "(#10) This message is sent outside of allowed window.";
        return meta_error(StatusCode::BAD_REQUEST, 10, Some(2018278), message);
    }
    let id = format!("m_{}", seen.len());
    (
        StatusCode::OK,
        Json(json!({"recipient_id": psid, "message_id": id})),
    )
}

/// A business-scoped user id as Meta spells it: a country code, a dot, letters and digits
/// (`US.13491208655302741918`; parent ids add `ENT.`).
fn is_user_id(id: &str) -> bool {
    let mut parts = id.split('.');
    let country = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    country.len() == 2
        && country.chars().all(|c| c.is_ascii_uppercase())
        && !rest.is_empty()
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The Cloud API messages endpoint: a phone in `to`, or a business-scoped user id in
/// `recipient`, never both; the first call meets a transient outage.
fn whatsapp(fake: &Fake, body: Value) -> Answer {
    let phone = body["to"]
        .as_str()
        .filter(|t| t.chars().all(|c| c.is_ascii_digit()));
    let user_id = body["recipient"].as_str().filter(|r| is_user_id(r));
    let one_recipient = match (phone, user_id) {
        (Some(_), None) => body.get("recipient").is_none(),
        (None, Some(_)) => body.get("to").is_none(),
        _ => false,
    };
    let ok = body["messaging_product"] == "whatsapp"
        && body["recipient_type"] == "individual"
        && body["type"] == "text"
        && one_recipient
        && body["text"]["body"].as_str().is_some();
    if !ok {
        return fake.problem(format!("bad Cloud API payload: {body}"));
    }
    fake.seen
        .lock()
        .unwrap()
        .push((PHONE_ID.to_owned(), body.clone()));
    let mut outages = fake.outages.lock().unwrap();
    if *outages == 0 {
        *outages += 1;
        let message = "Service temporarily unavailable";
        return meta_error(StatusCode::SERVICE_UNAVAILABLE, 2, None, message);
    }
    let contact = match user_id {
        Some(user_id) => json!({"input": user_id, "user_id": user_id}),
        None => json!({"input": phone, "wa_id": phone}),
    };
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [{"id": "wamid.HBgLMTU1NTAxMDAVAgARGBI5"}],
    });
    (StatusCode::OK, Json(answer))
}

pub(crate) async fn start_fake() -> (String, Fake) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/{version}/{node}/messages", post(messages))
        .route(
            "/{version}/me/messenger_profile",
            post(profile_set).delete(profile_delete),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v21.0"), fake)
}

pub(crate) fn config(dir: &std::path::Path, graph: &str) -> String {
    std::fs::write(dir.join("page-token"), format!("{PAGE_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("wa-token"), WA_TOKEN).unwrap();
    format!(
        "{control}[channels.fb]\nkind = \"api\"\n\n[channels.wa]\nkind = \"api\"\n\n[channels.chat]\nkind = \"api\"\n\n\
         [outbound]\ngraph_api_base_url = \"{graph}\"\nretry_base_ms = 100\nretry_max_secs = 1\nchat_channels = [\"chat\"]\n\n\
         [outbound.messenger.fb]\npage_id = \"{PAGE_ID}\"\npage_access_token_file = \"{page}\"\n\
         instant_reply = \"Thanks for your message! An agent will answer soon.\"\n\n\
         [outbound.whatsapp.wa]\nphone_number_id = \"{PHONE_ID}\"\naccess_token_file = \"{wa}\"\n\n\
         # Customers here wrote days before deskgate received their message (to reach the\n\
         # platforms' windows); as history they would get no instant reply.\n\
         [routing]\nhistory_age_secs = 0\n",
        control = control_toml(dir),
        page = dir.join("page-token").display(),
        wa = dir.join("wa-token").display(),
    )
}

/// Posts a customer message (written `hours_ago`) and returns its conversation id.
async fn customer(
    client: &reqwest::Client,
    daemon: &Daemon,
    channel: &str,
    from: Value,
    hours_ago: i64,
) -> String {
    let thread = format!("{channel}-{from}");
    let body = json!({
        "external_id": format!("{thread}-1"), "thread_id": thread, "from": from, "text": "hello",
        "sent_at": (Utc::now() - chrono::Duration::hours(hours_ago)).to_rfc3339(),
    });
    let response = client
        .post(daemon.url(&format!("/hooks/{channel}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created");
    created.last().unwrap()["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn reply(
    client: &reqwest::Client,
    daemon: &Daemon,
    conversation: &str,
    key: &str,
) -> (u16, Value) {
    let url = daemon.url(&format!("/v1/control/conversations/{conversation}/replies"));
    let body =
        json!({"agent": {"id": "agent-1", "name": "Gil Ng"}, "text": format!("reply {key}")});
    control_post(client, &url, Some(key), &body).await
}

pub(crate) async fn wait_outcomes(daemon: &Daemon, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = daemon.all_events().await;
        let done = of_type(&events, "deskgate.outbound.sent").len()
            + of_type(&events, "deskgate.outbound.failed").len();
        if done >= n {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} outcomes; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(dir: &std::path::Path) -> (Fake, Daemon) {
    let (graph, fake) = start_fake().await;
    let daemon = Daemon::start(dir, &config(dir, &graph)).await;
    (fake, daemon)
}

/// Starts deskgate with a real Meta webhook channel `channel` of `kind` (`messenger` or
/// `whatsapp`), answered through `[outbound.<kind>.<channel>]` with its node id
/// (`(setting, value)`) and the token file `config` writes (`(setting, file name)`).
async fn start_meta_channel(
    dir: &std::path::Path,
    (kind, channel): (&str, &str),
    (id_setting, id): (&str, &str),
    (token_setting, token_file): (&str, &str),
) -> (Fake, Daemon) {
    let (graph, fake) = start_fake().await;
    let extra = format!(
        "{}\n[channels.{channel}]\nkind = \"{kind}\"\n{}\n\n[outbound.{kind}.{channel}]\n\
         {id_setting} = \"{id}\"\n{token_setting} = \"{}\"\n",
        config(dir, &graph),
        crate::messaging_support::meta_table(dir),
        dir.join(token_file).display(),
    );
    (fake, Daemon::start(dir, &extra).await)
}

/// Posts a signed webhook and returns the `deskgate.ticket.created` event it led to.
async fn webhook_ticket(
    client: &reqwest::Client,
    daemon: &Daemon,
    channel: &str,
    webhook: &Value,
) -> Value {
    let body = serde_json::to_vec(webhook).unwrap();
    let (status, answer) =
        crate::messaging_support::post_meta(client, daemon, channel, &body).await;
    assert_eq!(status, 200, "{answer}");
    daemon.settled().await;
    let events = daemon.all_events().await;
    of_type(&events, "deskgate.ticket.created")[0].clone()
}

/// A customer writing through a real Messenger webhook is answered at the PSID Meta gave, not
/// at deskgate's page-scoped identity.
#[tokio::test]
async fn a_messenger_webhook_customer_is_answered_at_their_psid() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, daemon) = start_meta_channel(
        dir.path(),
        ("messenger", "page"),
        ("page_id", PAGE_ID),
        ("page_access_token_file", "page-token"),
    )
    .await;
    let client = reqwest::Client::new();
    let webhook = json!({ "object": "page", "entry": [{ "id": PAGE_ID, "time": 1,
        "messaging": [{ "sender": { "id": "2411" }, "recipient": { "id": PAGE_ID },
            "timestamp": Utc::now().timestamp_millis(),
            "message": { "mid": "m_real_1", "text": "Is my order late?" } }] }] });
    let created = webhook_ticket(&client, &daemon, "page", &webhook).await;
    let conversation = created["data"]["conversation"]["id"].as_str().unwrap();
    let (status, answer) = reply(&client, &daemon, conversation, "real-1").await;
    assert_eq!(status, 202, "{answer}");
    wait_outcomes(&daemon, 1).await;
    assert!(fake.problems.lock().unwrap().is_empty());
    let seen = fake.seen.lock().unwrap();
    let recipients: Vec<&Value> = seen
        .iter()
        .map(|(_, body)| &body["recipient"]["id"])
        .collect();
    assert_eq!(recipients, [&json!("2411")], "{seen:?}");
}

/// The page's instant reply on a real `kind = "messenger"` channel: one per conversation, at
/// the visitor's PSID, as a RESPONSE, with its outcome event; not again for the visitor's next
/// messages, nor after a kill -9 and a restart.
#[tokio::test]
async fn a_messenger_channel_sends_its_instant_reply_once_per_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, fake) = start_fake().await;
    let extra = format!(
        "{}\n[channels.page]\nkind = \"messenger\"\n{}\n\n\
         [outbound.messenger.page]\npage_id = \"{PAGE_ID}\"\npage_access_token_file = \"{}\"\n\
         instant_reply = \"Bonjour ! Un agent vous répond bientôt.\"\n",
        config(dir.path(), &graph),
        crate::messaging_support::meta_table(dir.path()),
        dir.path().join("page-token").display(),
    );
    let mut daemon = Daemon::start(dir.path(), &extra).await;
    let client = reqwest::Client::new();
    for n in 1..=2 {
        let webhook = json!({ "object": "page", "entry": [{ "id": PAGE_ID, "time": 1,
            "messaging": [{ "sender": { "id": "7788" }, "recipient": { "id": PAGE_ID },
                "timestamp": Utc::now().timestamp_millis(),
                "message": { "mid": format!("m_instant_{n}"), "text": format!("message {n}") } }] }] });
        let body = serde_json::to_vec(&webhook).unwrap();
        let (status, answer) =
            crate::messaging_support::post_meta(&client, &daemon, "page", &body).await;
        assert_eq!(status, 200, "{answer}");
        daemon.settled().await;
    }
    let events = wait_outcomes(&daemon, 1).await;
    daemon.kill();
    daemon.restart().await;
    let webhook = json!({ "object": "page", "entry": [{ "id": PAGE_ID, "time": 1,
        "messaging": [{ "sender": { "id": "7788" }, "recipient": { "id": PAGE_ID },
            "timestamp": Utc::now().timestamp_millis(),
            "message": { "mid": "m_instant_3", "text": "message 3" } }] }] });
    let body = serde_json::to_vec(&webhook).unwrap();
    let (status, answer) =
        crate::messaging_support::post_meta(&client, &daemon, "page", &body).await;
    assert_eq!(status, 200, "{answer}");
    daemon.settled().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert!(fake.problems.lock().unwrap().is_empty());
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one instant reply: {seen:?}");
    let (_, sent) = &seen[0];
    assert_eq!(sent["recipient"]["id"], "7788");
    assert_eq!(sent["messaging_type"], "RESPONSE");
    assert_eq!(
        sent["message"]["text"],
        "Bonjour ! Un agent vous répond bientôt."
    );
    let all = daemon.all_events().await;
    let outcomes = of_type(&all, "deskgate.outbound.sent");
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0]["data"]["purpose"], "instant_reply");
    assert_eq!(outcomes[0]["data"]["via"], "messenger");
    let created = of_type(&events, "deskgate.ticket.created");
    assert_eq!(created.len(), 1);
    assert_eq!(
        outcomes[0]["data"]["conversation_id"],
        created[0]["data"]["conversation"]["id"]
    );
    assert_eq!(of_type(&all, "deskgate.ticket.message_added").len(), 2);
}

/// The page's greeting is set from config at start (through one transient outage), set again
/// when a reload changes it, left alone by a reload that does not, and removed when the config
/// drops it.
#[tokio::test]
async fn the_messenger_greeting_follows_the_config_at_start_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, fake) = start_fake().await;
    *fake.profile_outages.lock().unwrap() = 1;
    let text = config(dir.path(), &graph).replace(
        "instant_reply = ",
        "greeting = \"Bonjour {{user_first_name}} ! Écrivez-nous.\"\ninstant_reply = ",
    );
    assert!(text.contains("greeting = "));
    let daemon = Daemon::start(dir.path(), &text).await;
    let calls = |n: usize| {
        let fake = fake.clone();
        async move {
            let what = format!("{n} profile calls");
            test_kit::eventually(&what, Duration::from_secs(20), || {
                let seen = fake.profile.lock().unwrap().len();
                async move { seen >= n }
            })
            .await;
            fake.profile.lock().unwrap().clone()
        }
    };
    let seen = calls(1).await;
    assert_eq!(seen[0].0, "POST", "{}", daemon.log());
    assert_eq!(
        seen[0].1["greeting"][0]["text"],
        "Bonjour {{user_first_name}} ! Écrivez-nous."
    );

    let reload = |edit: Box<dyn Fn(&str) -> String>, n: usize| {
        let text = std::fs::read_to_string(daemon.config_path()).unwrap();
        std::fs::write(daemon.config_path(), edit(&text)).unwrap();
        let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        let log = || daemon.log().matches("configuration reloaded").count();
        async move {
            test_kit::eventually("the reload", Duration::from_secs(10), || {
                let done = log() >= n;
                async move { done }
            })
            .await;
        }
    };
    reload(Box::new(|t| t.replace("Écrivez-nous.", "Write to us.")), 1).await;
    let seen = calls(2).await;
    assert_eq!(
        seen[1].1["greeting"][0]["text"],
        "Bonjour {{user_first_name}} ! Write to us."
    );
    // A reload that leaves the greeting alone calls nothing.
    reload(
        Box::new(|t| t.replace("retry_max_secs = 1", "retry_max_secs = 2")),
        2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.profile.lock().unwrap().len(), 2);
    reload(
        Box::new(|t| {
            t.lines()
                .filter(|l| !l.starts_with("greeting = "))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        3,
    )
    .await;
    let seen = calls(3).await;
    assert_eq!(
        seen[2],
        ("DELETE".to_owned(), json!({ "fields": ["greeting"] }))
    );
    assert!(
        fake.problems.lock().unwrap().is_empty(),
        "{:?}",
        fake.problems.lock().unwrap()
    );
    assert!(daemon
        .log()
        .contains("setting the Messenger greeting failed; retrying"));
}

/// Runs `deskgate check-config` on `text` (written into `dir`), checks that it refuses the
/// file and returns what it said.
pub(crate) fn check_config_refuses(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("refused.toml");
    std::fs::write(&path, text).unwrap();
    let check = test_kit::check_config(&path, None);
    assert!(!check.ok);
    check.stderr
}

#[test]
fn a_greeting_over_messengers_limit_is_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "http://127.0.0.1:9/v21.0").replace(
        "instant_reply = ",
        &format!("greeting = \"{}\"\ninstant_reply = ", "a".repeat(161)),
    );
    let stderr = check_config_refuses(dir.path(), &text);
    assert!(
        stderr.contains(
            "outbound.messenger.fb.greeting: must be 1 to 160 characters (Messenger's limit), not 161"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn messenger_replies_follow_the_24_hour_and_7_day_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, daemon) = start(dir.path()).await;
    let client = reqwest::Client::new();

    // A fresh message gets the instant reply and a RESPONSE; three days later the HUMAN_AGENT
    // tag; after seven days deskgate refuses; Meta's window error fails the send.
    let fresh = customer(
        &client,
        &daemon,
        "fb",
        json!({"external_id": "psid-fresh"}),
        0,
    )
    .await;
    let older = customer(
        &client,
        &daemon,
        "fb",
        json!({"external_id": "psid-older"}),
        72,
    )
    .await;
    let stale = customer(
        &client,
        &daemon,
        "fb",
        json!({"external_id": "psid-stale"}),
        8 * 24,
    )
    .await;
    let closed = customer(
        &client,
        &daemon,
        "fb",
        json!({"external_id": "psid-window-closed"}),
        1,
    )
    .await;
    assert_eq!(reply(&client, &daemon, &fresh, "fb-1").await.0, 202);
    assert_eq!(reply(&client, &daemon, &older, "fb-2").await.0, 202);
    let (status, body) = reply(&client, &daemon, &stale, "fb-3").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("within 7 days"),
        "{body}"
    );
    assert_eq!(reply(&client, &daemon, &closed, "fb-4").await.0, 202);

    // 4 instant replies + 3 replies.
    let events = wait_outcomes(&daemon, 7).await;
    assert!(
        fake.problems.lock().unwrap().is_empty(),
        "{:?}",
        fake.problems.lock().unwrap()
    );
    let seen = fake.seen.lock().unwrap().clone();
    let sent_to = |psid: &str| -> Vec<Value> {
        let to_psid = seen.iter().filter(|(_, b)| b["recipient"]["id"] == psid);
        to_psid.map(|(_, b)| b.clone()).collect()
    };
    let fresh_sent = sent_to("psid-fresh");
    assert_eq!(fresh_sent.len(), 2);
    let instant = "Thanks for your message! An agent will answer soon.";
    assert!(fresh_sent.iter().any(|b| b["message"]["text"] == instant));
    assert!(fresh_sent.iter().all(|b| b["messaging_type"] == "RESPONSE"));
    let older_sent = sent_to("psid-older");
    let older_reply: Vec<_> = older_sent
        .iter()
        .filter(|b| b["message"]["text"] == "reply fb-2")
        .collect();
    assert_eq!(older_reply.len(), 1);
    assert_eq!(older_reply[0]["messaging_type"], "MESSAGE_TAG");
    assert_eq!(older_reply[0]["tag"], "HUMAN_AGENT");
    assert!(sent_to("psid-stale")
        .iter()
        .all(|b| b["message"]["text"] != "reply fb-3"));
    let failed = of_type(&events, "deskgate.outbound.failed");
    assert_eq!(
        failed.len(),
        2,
        "the closed-window reply and its instant reply"
    );
    for event in failed {
        assert!(event["data"]["error"]
            .as_str()
            .unwrap()
            .contains("window is closed"));
        assert_eq!(event["data"]["recipient"], "psid-window-closed");
    }
    let sent = of_type(&events, "deskgate.outbound.sent");
    assert_eq!(sent.len(), 5);
    assert!(sent
        .iter()
        .all(|e| e["data"]["provider_id"].as_str().unwrap().starts_with("m_")));
}

#[tokio::test]
async fn whatsapp_replies_need_the_24_hour_window_and_chat_replies_become_events() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, daemon) = start(dir.path()).await;
    let client = reqwest::Client::new();

    // Inside 24 hours it is sent (after one transient outage); outside, refused.
    let wa = customer(
        &client,
        &daemon,
        "wa",
        json!({"phone": "+1 415 555 0100"}),
        2,
    )
    .await;
    let wa_old = customer(
        &client,
        &daemon,
        "wa",
        json!({"phone": "+1 415 555 0199"}),
        30,
    )
    .await;
    assert_eq!(reply(&client, &daemon, &wa, "wa-1").await.0, 202);
    let (status, body) = reply(&client, &daemon, &wa_old, "wa-2").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("template"),
        "{body}"
    );

    // Chat: handed to the widget's backend as an event.
    let chat = customer(
        &client,
        &daemon,
        "chat",
        json!({"external_id": "visitor-9"}),
        0,
    )
    .await;
    let (status, body) = reply(&client, &daemon, &chat, "chat-1").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("handed_over"))
    );

    let events = wait_outcomes(&daemon, 1).await;
    assert!(
        fake.problems.lock().unwrap().is_empty(),
        "{:?}",
        fake.problems.lock().unwrap()
    );
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one outage, one retry");
    assert!(seen
        .iter()
        .all(|(node, body)| node == PHONE_ID && body["to"] == "14155550100"));
    let sent = of_type(&events, "deskgate.outbound.sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["data"]["via"], "whatsapp");
    assert_eq!(
        sent[0]["data"]["provider_id"],
        "wamid.HBgLMTU1NTAxMDAVAgARGBI5"
    );
    assert_eq!(sent[0]["data"]["attempts"], 2);
    let chat_events = of_type(&events, "deskgate.outbound.chat_message");
    assert_eq!(chat_events.len(), 1);
    let data = &chat_events[0]["data"];
    assert_eq!(data["text"], "reply chat-1");
    assert_eq!(data["conversation"]["id"], chat.as_str());
    assert_eq!(data["agent"]["id"], "agent-1");
}

/// A WhatsApp customer who hides their number behind a username writes through a real
/// webhook with only their business-scoped user id: the reply goes to that id as the Cloud
/// API's `recipient` (no `to`), and the statuses Meta sends for it, by `recipient_user_id`,
/// land on the conversation's ticket.
#[tokio::test]
async fn a_whatsapp_username_customer_is_answered_at_their_user_id() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, daemon) = start_meta_channel(
        dir.path(),
        ("whatsapp", "wau"),
        ("phone_number_id", PHONE_ID),
        ("access_token_file", "wa-token"),
    )
    .await;
    let client = reqwest::Client::new();
    let user_id = "US.13491208655302741918";
    let change = |value: Value| {
        json!({ "object": "whatsapp_business_account", "entry": [{ "id": "waba1",
            "changes": [{ "field": "messages", "value": value }] }] })
    };
    let metadata = json!({ "display_phone_number": "15550001", "phone_number_id": PHONE_ID });
    let message = change(json!({
        "messaging_product": "whatsapp", "metadata": metadata,
        "contacts": [{ "profile": { "username": "@sheena" }, "user_id": user_id }],
        "messages": [{ "from_user_id": user_id, "id": "wamid.in1", "type": "text",
            "timestamp": Utc::now().timestamp().to_string(), "text": { "body": "where is it?" } }],
    }));
    let created = &webhook_ticket(&client, &daemon, "wau", &message).await;
    let conversation = created["data"]["conversation"]["id"].as_str().unwrap();
    let (status, answer) = reply(&client, &daemon, conversation, "bsuid-1").await;
    assert_eq!(status, 202, "{answer}");
    wait_outcomes(&daemon, 1).await;
    assert!(
        fake.problems.lock().unwrap().is_empty(),
        "{:?}",
        fake.problems.lock().unwrap()
    );
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one outage, one retry");
    for (node, body) in &seen {
        assert_eq!(node, PHONE_ID);
        assert_eq!(
            body,
            &json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "recipient": user_id,
                "type": "text",
                "text": { "preview_url": false, "body": "reply bsuid-1" },
            })
        );
    }

    let delivered = change(json!({
        "messaging_product": "whatsapp", "metadata": metadata,
        "statuses": [{ "id": "wamid.HBgLMTU1NTAxMDAVAgARGBI5", "status": "delivered",
            "timestamp": Utc::now().timestamp().to_string(), "recipient_user_id": user_id }],
    }));
    let delivered = serde_json::to_vec(&delivered).unwrap();
    let (status, answer) =
        crate::messaging_support::post_meta(&client, &daemon, "wau", &delivered).await;
    assert_eq!(status, 200, "{answer}");
    daemon.settled().await;
    let events = daemon.all_events().await;
    let statuses = of_type(&events, "deskgate.message.delivery_status");
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["subject"], created["subject"]);
    assert_eq!(statuses[0]["data"]["ticket_id"], created["subject"]);
    assert_eq!(
        statuses[0]["data"]["message_ids"],
        json!(["wamid.HBgLMTU1NTAxMDAVAgARGBI5"])
    );
}
