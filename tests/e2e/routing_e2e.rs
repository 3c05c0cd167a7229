//! Routing end to end against the real binary: agents and availability set through the control
//! API, tickets from the API channel assigned round robin across a kill -9, a status change
//! through the control API (idempotent), and a customer's reply reopening the closed ticket.

use std::path::Path;

use serde_json::{json, Value};
use test_kit::{api_message, Daemon};

const TOKEN: &str = "routing-control-token-0123";

fn extra(dir: &Path) -> String {
    let token_file = dir.join("control.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    format!(
        r#"
[channels.api.tickets]
pipeline = "support"
priority = "normal"
[channels.api.tickets.routing]
rule = "users_and_teams"
teams = ["support"]

[control]
token_files = ["{}"]

[routing.teams.support]
label = "Support"

[routing.users.alice]
name = "Alice"
email = "alice@desk.example"
teams = ["support"]

[routing.pipelines.support]
label = "Support"
statuses = [
  {{ id = "new", label = "New", open = true }},
  {{ id = "waiting_on_contact", label = "Waiting on contact", open = true }},
  {{ id = "waiting_on_us", label = "Waiting on us", open = true }},
  {{ id = "closed", label = "Closed", open = false }},
]
"#,
        token_file.display()
    )
}

struct Control<'a> {
    daemon: &'a Daemon,
    client: reqwest::Client,
}

impl Control<'_> {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, self.daemon.url(path))
            .bearer_auth(TOKEN);
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
}

async fn post_message(daemon: &Daemon, id: &str, thread: &str) {
    let response = reqwest::Client::new()
        .post(daemon.url("/hooks/api"))
        .json(&api_message(id, thread, "ana@example.com", "hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[tokio::test]
async fn tickets_are_routed_round_robin_across_restarts_and_reopen_on_reply() {
    let dir = tempfile::tempdir().unwrap();
    let extra = extra(dir.path());
    let mut daemon = Daemon::start(dir.path(), &extra).await;
    let control = Control {
        daemon: &daemon,
        client: reqwest::Client::new(),
    };

    let bob = json!({ "name": "Bob", "email": "bob@desk.example", "teams": ["support"] });
    let (status, body) = control
        .send("PUT", "/v1/control/users/bob", Some(bob), None)
        .await;
    assert_eq!(status, 200, "{body}");
    for user in ["alice", "bob"] {
        let path = format!("/v1/control/users/{user}/availability");
        let (status, body) = control
            .send(
                "PUT",
                &path,
                Some(json!({ "availability": "available" })),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = control
        .send(
            "PUT",
            "/v1/control/users/zoe/availability",
            Some(json!({ "availability": "away" })),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no user \"zoe\""))
    );
    let (status, body) = control
        .send(
            "PUT",
            "/v1/control/users/bob/availability",
            Some(json!({ "availability": "busy" })),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("availability: unknown variant `busy`"),
        "{body}"
    );

    let (status, body) = control
        .send(
            "PUT",
            "/v1/control/users/carl",
            Some(json!({ "email": "c@x" })),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("body: missing field `name` at line 1 column 15"))
    );
    let (status, body) = control
        .send(
            "PUT",
            "/v1/control/users/Carl%20K",
            Some(json!({ "name": "Carl" })),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = control
        .send(
            "PUT",
            "/v1/control/users/carl",
            Some(json!({ "name": "Carl", "teams": ["sales"] })),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("teams: unknown team \"sales\""))
    );

    post_message(&daemon, "m1", "t1").await;
    post_message(&daemon, "m2", "t2").await;
    daemon.settled().await;

    // Availability, the directory and the rotation survive a crash: an acknowledged control
    // mutation is durable.
    daemon.kill();
    daemon.restart().await;
    daemon.settled().await;
    let control = Control {
        daemon: &daemon,
        client: reqwest::Client::new(),
    };
    let (_, users) = control.send("GET", "/v1/control/users", None, None).await;
    assert_eq!(
        users["users"]["bob"]["availability"], "available",
        "{users}"
    );
    assert_eq!(users["users"]["alice"]["availability"], "available");
    assert_eq!(users["open_tickets"], json!({ "alice": 1, "bob": 1 }));
    assert_eq!(users["teams"], json!({ "support": { "label": "Support" } }));
    post_message(&daemon, "m3", "t3").await;
    daemon.settled().await;

    let events = daemon.all_events().await;
    let assigned: Vec<(&str, &str)> = of_type(&events, "deskgate.ticket.assigned")
        .iter()
        .map(|e| {
            (
                e["data"]["assignee"].as_str().unwrap(),
                e["data"]["trace"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        assigned,
        [
            ("alice", "round robin picked alice"),
            ("bob", "round robin picked bob"),
            ("alice", "round robin picked alice"),
        ]
    );
    let created = of_type(&events, "deskgate.ticket.created");
    assert_eq!(created[0]["data"]["ticket"]["status"], "new");
    assert_eq!(created[0]["data"]["ticket"]["priority"], "normal");
    let first = created[0]["subject"].as_str().unwrap().to_owned();

    // Closing through the control API, twice with one Idempotency-Key: applied once.
    let path = format!("/v1/control/tickets/{first}/status");
    let close = json!({ "status": "closed" });
    let (status, body) = control
        .send("PUT", &path, Some(close.clone()), Some("close-1"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], true);
    let (status, again) = control
        .send("PUT", &path, Some(close), Some("close-1"))
        .await;
    assert_eq!((status, &again), (200, &body));
    let (status, body) = control
        .send("PUT", &path, Some(json!({ "status": "solved" })), None)
        .await;
    assert_eq!(status, 422, "{body}");

    // The customer replies on the closed ticket's thread: it reopens with customer_replied.
    post_message(&daemon, "m4", "t1").await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(of_type(&events, "deskgate.conversation.closed").len(), 1);
    let triggers = of_type(&events, "deskgate.ticket.status_trigger");
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0]["subject"], first.as_str());
    assert_eq!(triggers[0]["data"]["old_status"], "closed");
    assert_eq!(triggers[0]["data"]["new_status"], "waiting_on_us");
    let (status, view) = control
        .send("GET", &format!("/v1/control/tickets/{first}"), None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(view["routing"]["status"], "waiting_on_us");
    assert_eq!(view["routing"]["owner"], "alice");
    assert_eq!(view["conversations"][0]["state"]["closed"], false);

    // Without the token, nothing.
    let response = reqwest::Client::new()
        .get(daemon.url("/v1/control/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
