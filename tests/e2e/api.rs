//! The API channel end to end against the real binary: events, deduplication, every error
//! answer, long polling, and a clean shutdown.

use std::time::{Duration, Instant};

use serde_json::Value;
use test_kit::{api_message, raw_request, Daemon};

async fn post(client: &reqwest::Client, daemon: &Daemon, body: &Value) -> (u16, Value) {
    let response = client
        .post(daemon.url("/hooks/api"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// A channel configured not to open tickets (`tickets.create = false`, a notes or archive
/// feed) still threads its messages: the store sees conversation events without a ticket.
#[tokio::test]
async fn a_ticketless_channel_emits_conversation_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[channels.notes]\nkind = \"api\"\n[channels.notes.tickets]\ncreate = false\n";
    let daemon = Daemon::start(dir.path(), extra).await;
    let client = reqwest::Client::new();
    for (id, text) in [("n1", "first"), ("n2", "second")] {
        let response = client
            .post(daemon.url("/hooks/notes"))
            .json(&api_message(id, "t1", "ana@example.com", text))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(
        types(&events),
        [
            "deskgate.contact.created",
            "deskgate.conversation.message_added",
            "deskgate.conversation.message_added"
        ]
    );
    assert!(events[1]["data"].get("ticket").is_none(), "{}", events[1]);
    assert_eq!(
        events[1]["data"]["conversation"]["id"], events[2]["data"]["conversation"]["id"],
        "one thread, one conversation"
    );
}

#[tokio::test]
async fn messages_become_contact_and_ticket_events_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "").await;
    let client = reqwest::Client::new();

    let (status, body) = post(
        &client,
        &daemon,
        &api_message("m1", "t1", "Ana@Example.com", "first"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicate"], false);
    let (status, body) = post(
        &client,
        &daemon,
        &api_message("m1", "t1", "Ana@Example.com", "first"),
    )
    .await;
    assert_eq!(status, 200, "a resend is acknowledged again");
    assert_eq!(body["duplicate"], true);
    post(
        &client,
        &daemon,
        &api_message("m2", "t1", "ana@example.com", "second"),
    )
    .await;
    post(
        &client,
        &daemon,
        &api_message("m3", "t2", "ana@example.com", "other thread"),
    )
    .await;
    post(
        &client,
        &daemon,
        &api_message("m4", "t3", "bo@example.com", "someone else"),
    )
    .await;
    daemon.settled().await;

    let events = daemon.all_events().await;
    assert_eq!(
        types(&events),
        [
            "deskgate.contact.created",
            "deskgate.ticket.created",
            "deskgate.ticket.message_added",
            "deskgate.ticket.created",
            "deskgate.contact.created",
            "deskgate.ticket.created",
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["specversion"], "1.0");
        let source = event["source"].as_str().unwrap();
        assert!(source.starts_with("urn:deskgate:"), "{source}");
        assert_eq!(events[0]["source"], source, "one source per instance");
        assert_eq!(event["channel"], "api");
        let schema = format!(
            "{source}/v1/schemas/events/{}.json",
            event["type"].as_str().unwrap()
        );
        assert_eq!(event["dataschema"], schema);
        assert_eq!(event["sequence"], format!("{:020}", i + 1));
        assert!(event["id"].as_str().is_some_and(|id| id.len() == 36));
        assert!(event["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    let ana = events[0]["subject"].as_str().unwrap();
    let first_ticket = events[1]["subject"].as_str().unwrap();
    assert_eq!(events[1]["data"]["ticket"]["contact_id"], ana);
    assert_eq!(events[1]["data"]["message"]["external_id"], "m1");
    assert_eq!(events[1]["data"]["message"]["text"], "first");
    assert_eq!(
        events[2]["subject"], first_ticket,
        "same thread, same ticket"
    );
    assert_eq!(events[2]["data"]["message"]["external_id"], "m2");
    assert_ne!(
        events[3]["subject"], first_ticket,
        "a new thread opens a new ticket"
    );
    assert_eq!(
        events[3]["data"]["ticket"]["contact_id"], ana,
        "for the same contact"
    );
    assert_ne!(events[4]["subject"], ana);

    // Paging: `next` continues where the last page ended.
    let page: Value = client
        .get(daemon.url("/v1/events?after=2&limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        types(page["events"].as_array().unwrap()),
        &types(&events)[2..4]
    );
    assert_eq!(page["next"], 4);
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_an_event_exists() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "").await;
    let client = reqwest::Client::new();
    let poll = client.get(daemon.url("/v1/events?after=0&wait=30")).send();
    let started = Instant::now();
    let poster = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        post(
            &client,
            &daemon,
            &api_message("m1", "t1", "ana@example.com", "hi"),
        )
        .await
    };
    let (response, _) = tokio::join!(poll, poster);
    let page: Value = response.unwrap().json().await.unwrap();
    assert!(!page["events"].as_array().unwrap().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "returned on the event, not the timeout"
    );

    let quiet = Instant::now();
    let page: Value = client
        .get(daemon.url("/v1/events?after=1000&wait=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page["events"].as_array().unwrap().is_empty());
    assert_eq!(page["next"], 1000);
    assert!(
        quiet.elapsed() >= Duration::from_millis(900),
        "waited for the asked time"
    );
}

#[tokio::test]
async fn bad_requests_get_a_clear_status_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "").await;
    let client = reqwest::Client::new();
    let post_raw = |path: &str, content_type: &str, body: &str| {
        client
            .post(daemon.url(path))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
    };
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "/hooks/api",
            "application/json",
            "{".into(),
            400,
            "invalid JSON",
        ),
        (
            "/hooks/api",
            "application/json",
            r#"{"external_id":"m","thread_id":"t","from":{"email":7},"text":"x"}"#.into(),
            400,
            "from.email: invalid type",
        ),
        (
            "/hooks/api",
            "application/json",
            r#"{"external_id":"","thread_id":"t","from":{"email":"a@b.co"},"text":"x"}"#.into(),
            422,
            "external_id: must not be empty",
        ),
        (
            "/hooks/api",
            "text/plain",
            "hello".into(),
            415,
            "content type must be application/json",
        ),
        (
            "/hooks/api",
            "application/json",
            format!(r#"{{"text":"{}"}}"#, "x".repeat(5000)),
            413,
            "larger than this channel's limit of 4096 bytes",
        ),
        (
            "/hooks/nope",
            "application/json",
            "{}".into(),
            404,
            "no channel \"nope\" is configured",
        ),
        (
            "/v1/nothing",
            "application/json",
            "{}".into(),
            404,
            "no such endpoint",
        ),
        (
            "/v1/events",
            "application/json",
            "{}".into(),
            405,
            "method not allowed",
        ),
    ];
    for (path, content_type, body, status, message) in cases {
        let response = post_raw(path, content_type, &body).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {content_type}");
        let error: Value = response.json().await.unwrap();
        let text = error["error"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{path}: {text:?} should contain {message:?}"
        );
    }
    let response = client
        .get(daemon.url("/v1/events?after=minus-one"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("after: must be a whole number"), "{text}");

    // A declared length over the limit is refused before the body is sent at all.
    let head = format!(
        "POST /hooks/api HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    let answer = raw_request(daemon.addr, head.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A chunked body that grows past the limit is cut off with 413 too.
    let mut chunked = b"POST /hooks/api HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    let answer = raw_request(daemon.addr, &chunked, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // None of that produced an event, and the daemon still works.
    let (status, _) = post(
        &client,
        &daemon,
        &api_message("ok", "t", "ana@example.com", "fine"),
    )
    .await;
    assert_eq!(status, 202);
    daemon.settled().await;
    assert_eq!(daemon.all_events().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), "").await;
    let client = reqwest::Client::new();
    // A long poll in flight must not hold shutdown for its whole wait.
    let poll = client
        .get(daemon.url("/v1/events?after=100&wait=60"))
        .send();
    let sends = (0..50).map(|i| {
        let body = api_message(&format!("m{i}"), "t", "ana@example.com", "hi");
        let request = client.post(daemon.url("/hooks/api")).json(&body).send();
        async move { request.await.map(|r| r.status().as_u16()) }
    });
    let sends = futures::future::join_all(sends);
    let stop = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let status = tokio::task::block_in_place(|| daemon.terminate());
        (status, started.elapsed())
    };
    let (poll, results, (status, took)) = tokio::join!(poll, sends, stop);
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(5),
        "stopped within the grace period, took {took:?}"
    );
    assert!(poll.is_ok(), "the long poll was answered, not cut off");
    let acked: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Ok(202)))
        .map(|(i, _)| i)
        .collect();

    // Every acknowledged message is there after a restart, once.
    daemon.restart().await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let mut seen: Vec<usize> = events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("deskgate.ticket."))
        .map(|e| {
            e["data"]["message"]["external_id"].as_str().unwrap()[1..]
                .parse()
                .unwrap()
        })
        .collect();
    seen.sort_unstable();
    for i in &acked {
        assert!(seen.contains(i), "acknowledged m{i} is missing");
    }
    seen.dedup();
    assert_eq!(
        seen.len(),
        events.len() - 1,
        "no message twice (one contact event)"
    );
    assert!(daemon.log().contains("deskgate stopped"));
}

#[tokio::test]
async fn check_config_reports_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[journal]\nmax_batch = 0\n[channels.web]\nkind = \"api\"\nmax_body_bytes = 0\n",
    )
    .unwrap();
    let check = test_kit::check_config(&bad, None);
    // EX_USAGE for a config that is wrong, 1 for one that cannot be read.
    assert_eq!(check.code, Some(64));
    let stderr = check.stderr;
    assert!(
        stderr.contains("journal.max_batch: must be > 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("channels.web.max_body_bytes: must be > 0"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.toml");
    let check = test_kit::check_config(&missing, None);
    assert_eq!(check.code, Some(1));
    let stderr = check.stderr;
    assert!(stderr.contains("cannot read"), "{stderr}");

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/deskgate.toml");
    let check = test_kit::check_config(std::path::Path::new(shipped), None);
    assert!(check.ok, "{}", check.stderr);
}

#[tokio::test]
async fn the_control_api_refuses_anyone_without_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("control.token");
    std::fs::write(&token_file, "s3cret-control-token-0123\n").unwrap();
    let extra = format!("[control]\ntoken_files = [\"{}\"]\n", token_file.display());
    let daemon = Daemon::start(dir.path(), &extra).await;
    let client = reqwest::Client::new();
    let url = daemon.url("/v1/control/quarantine");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcmV0"),
        Some("Bearer "),
    ] {
        let mut request = client.get(&url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("s3cret"), "no secret in the answer: {body}");
    }
    let response = client
        .get(&url)
        .bearer_auth("s3cret-control-token-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"], serde_json::json!([]));
    assert!(
        !daemon.log().contains("s3cret"),
        "the token never reaches the log"
    );
}

/// Every event's `dataschema` is served by the daemon, and is the committed schema file.
#[tokio::test]
async fn the_daemon_serves_the_committed_event_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "").await;
    let client = reqwest::Client::new();
    let name = "deskgate.ticket.created.json";
    let response = client
        .get(daemon.url(&format!("/v1/schemas/events/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/schema+json"
    );
    let committed = std::fs::read_to_string(format!(
        "{}/schemas/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert_eq!(response.text().await.unwrap(), committed);
    let unknown = client
        .get(daemon.url("/v1/schemas/events/deskgate.nothing.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

/// The daemon serves its OpenAPI document as committed (`schemas/openapi.json`), and exactly
/// the routes the document lists. Probed with every method: every documented path, and every
/// string literal in the source that looks like a path (a route is registered with one), with
/// `0` for each `{parameter}`. An answer that is not the fallback's (404 `no such endpoint`,
/// 405 `method_not_allowed`) is a route, and must be documented; a documented operation must
/// not get the fallback's answer.
#[tokio::test]
async fn the_daemon_serves_its_openapi_document_and_exactly_its_routes() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "").await;
    let client = reqwest::Client::new();
    let response = client
        .get(daemon.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.json"))
            .unwrap();
    assert!(
        served == committed,
        "the served document differs from schemas/openapi.json"
    );

    let document: Value = serde_json::from_str(&committed).unwrap();
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut templates: std::collections::BTreeSet<String> =
        documented.iter().map(|(_, path)| path.clone()).collect();
    let literals = path_literals(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    assert!(
        literals.iter().any(|l| l == "/v1/openapi.json"),
        "{literals:?}"
    );
    templates.extend(literals);
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];
    let mut wrong = Vec::new();
    for template in &templates {
        let path = with_parameters(template, "0");
        for method in methods {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = client
                .request(method.clone(), daemon.url(&path))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let fallback = (status == 404 && body["error"] == "no such endpoint")
                || (status == 405 && body["code"] == "method_not_allowed");
            let in_document = route_of(&documented, &path)
                .is_some_and(|route| documented.contains(&(method.to_string(), route)));
            match (fallback, in_document) {
                (false, false) => wrong.push(format!("{method} {path}: {status}, not documented")),
                (true, true) => wrong.push(format!("{method} {path}: documented, not served")),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The documented path template that serves `path`, as the router picks it: of the templates
/// it is an instance of, the one with a literal segment where the others have a parameter.
fn route_of(documented: &[(String, String)], path: &str) -> Option<String> {
    let literal_segments = |template: &str| -> Vec<bool> {
        template.split('/').map(|s| !s.starts_with('{')).collect()
    };
    documented
        .iter()
        .map(|(_, template)| template)
        .filter(|template| matches(template, path))
        .max_by_key(|template| literal_segments(template))
        .cloned()
}

/// Whether `path` is an instance of the OpenAPI path `template`.
fn matches(template: &str, path: &str) -> bool {
    let (template, path): (Vec<_>, Vec<_>) =
        (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

/// `template` with every `{parameter}` (or `{}`) replaced by `value`.
fn with_parameters(template: &str, value: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        path.push_str(&rest[..open]);
        path.push_str(value);
        rest = &rest[close..];
    }
    path.push_str(rest);
    path
}

/// Every string literal in the `.rs` files below `dir` that looks like an absolute URL path.
fn path_literals(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(dir)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for literal in text.split('"').skip(1).step_by(2) {
                    let pathlike = literal.starts_with('/')
                        && literal
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"/{}_-.*".contains(&b));
                    if pathlike {
                        found.push(literal.to_owned());
                    }
                }
            }
        }
    }
    found
}
