//! End-to-end: a chat widget asks `GET /v1/channels/{id}/availability` whether anyone is there.
//! The answer follows the availability of the users the channel routes to (set through the
//! control API) and the channel's office hours in its time zone; it names no one, is open to
//! any origin, is rate-limited per client, and is refused for what is not a chat channel.

use crate::outbound_support::{control_toml, TOKEN};
use chrono::{Datelike, Utc};
use serde_json::{json, Value};
use test_kit::Daemon;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Days that are certainly not today in UTC, whatever the minute the test runs at: not
/// yesterday, today or tomorrow.
fn other_days() -> Vec<&'static str> {
    let today = Utc::now().weekday().num_days_from_monday() as usize;
    let near = [(today + 6) % 7, today, (today + 1) % 7];
    (0..7)
        .filter(|d| !near.contains(d))
        .map(|d| DAYS[d])
        .collect()
}

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"{control}
[channels.web]
kind = "chat"
[channels.web.chat]
rate_limit = {{ per_minute = 1, burst = 5 }}
[channels.web.chat.hours]
time_zone = "UTC"
open = [{{ days = {all:?}, from = "00:00", to = "24:00" }}]
[channels.web.tickets.routing]
rule = "users_and_teams"
teams = ["front"]

[channels.night]
kind = "chat"
[channels.night.chat.hours]
time_zone = "Asia/Tokyo"
open = [{{ days = {closed:?}, from = "00:00", to = "24:00" }}]

[routing.teams.front]
label = "Front desk"
[routing.users.alice]
name = "Alice Martin"
email = "alice@example.com"
teams = ["front"]
[routing.users.bob]
name = "Bob Stone"
availability = "available"
"#,
        control = control_toml(dir),
        all = DAYS,
        closed = other_days(),
    )
}

async fn ask(daemon: &Daemon, channel: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::get(daemon.url(&format!("/v1/channels/{channel}/availability")))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

async fn set_availability(daemon: &Daemon, user: &str, availability: &str) {
    let response = reqwest::Client::new()
        .put(daemon.url(&format!("/v1/control/users/{user}/availability")))
        .bearer_auth(TOKEN)
        .header(
            "Idempotency-Key",
            format!(
                "{user}-{availability}-{}",
                Utc::now().timestamp_nanos_opt().unwrap()
            ),
        )
        .json(&json!({ "availability": availability }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_chat_widget_learns_whether_anyone_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &config(dir.path())).await;

    // Alice (the front desk team the channel routes to) starts available; Bob is not routed.
    let (status, headers, body) = ask(&daemon, "web").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "channel": "web", "status": "available" }));
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["cache-control"], "no-store");

    set_availability(&daemon, "alice", "away").await;
    let (_, _, body) = ask(&daemon, "web").await;
    assert_eq!(
        body,
        json!({ "channel": "web", "status": "away", "reason": "nobody_available" }),
        "bob is available but the channel does not route to him"
    );
    set_availability(&daemon, "alice", "available").await;
    let (_, _, body) = ask(&daemon, "web").await;
    assert_eq!(body["status"], "available");

    // Outside its office hours (in its own time zone) nobody is there, whoever is available.
    let (status, _, body) = ask(&daemon, "night").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "channel": "night", "status": "away", "reason": "outside_office_hours" })
    );

    // Only chat channels answer; unknown ones are not found.
    for channel in ["api", "nope"] {
        let (status, _, body) = ask(&daemon, channel).await;
        assert_eq!(status, 404, "{channel}: {body}");
        assert!(body["error"].as_str().unwrap().contains(channel), "{body}");
    }

    // The channel's rate limit holds: a burst of 5 (three used above), then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..5 {
        let (status, headers, _) = ask(&daemon, "web").await;
        if status == 429 {
            limited = Some(headers);
            break;
        }
    }
    let headers = limited.expect("the rate limit answers 429");
    assert!(headers.contains_key("retry-after"));
}

#[test]
fn check_config_names_bad_office_hours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[channels.web]
kind = "chat"
[channels.web.chat.hours]
time_zone = "Europe/Pariss"
open = [{ days = ["lundi"], from = "9h", to = "18:00" }]
"#,
    )
    .unwrap();
    let check = test_kit::check_config(&path, None);
    assert!(!check.ok);
    let stderr = check.stderr;
    for line in [
        "channels.web.chat.hours.time_zone: unknown time zone \"Europe/Pariss\"",
        "channels.web.chat.hours.open[0].days: \"lundi\" is not a day",
        "channels.web.chat.hours.open[0].from: \"9h\" is not a time of day as HH:MM",
    ] {
        assert!(stderr.contains(line), "{line} in:\n{stderr}");
    }
}
