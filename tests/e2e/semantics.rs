//! Ticket semantics a help desk can trust, on the real binary with real peers (aiosmtpd for
//! mail out, Dovecot for imports): agents' replies move tickets (`semantics/replies.rs`), promised mail
//! ends in an outcome (`semantics/promises.rs`) and quarantined inputs can be retried
//! (`semantics/retry.rs`), forms set the ticket they open
//! (`semantics/forms.rs`), routing works out of the box (`semantics/routing.rs`),
//! refusals name the problem (`semantics/messages.rs`),
//! history is not news (`semantics/history.rs`), spam can be undone
//! (`semantics/spam.rs`), tickets move between pipelines (`semantics/pipelines.rs`), also when
//! the config removes theirs and says where they go (`semantics/moves.rs`).
//! Each test asserts the events and the ticket mirror read through the control API.

mod forms;
mod history;
mod messages;
mod moves;
mod pipelines;
mod promises;
mod replies;
mod retry;
mod routing;
mod spam;

use std::path::Path;
use std::time::Duration;

use crate::outbound_support::TOKEN;
use serde_json::Value;
use test_kit::Daemon;

/// The `support` pipeline of the shipped config, with a notification when an agent's reply
/// moves a ticket to `waiting_on_contact` (so the test sees that status's actions run).
pub const PIPELINE: &str = r#"
[routing.users.alice]
name = "Alice"
email = "alice@desk.example"
seat = true

[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "new", label = "New", open = true },
  { id = "waiting_on_contact", label = "Waiting on contact", open = true },
  { id = "waiting_on_us", label = "Waiting on us", open = true },
  { id = "closed", label = "Closed", open = false },
]
[routing.pipelines.support.triggers]
customer_replied = { enabled = true, target = "waiting_on_us" }
agent_emailed = { enabled = true, target = "waiting_on_contact" }

[[routing.pipelines.support.actions]]
status = "waiting_on_contact"
action = "notify"
template = "internal_notification"
users = ["alice"]
"#;

/// `[outbound]` with one mailbox answering `channels` over the SMTP server on `smtp_port`.
pub fn mailbox(smtp_port: u16, channels: &str, acknowledge: bool) -> String {
    format!(
        "[outbound]\nretry_base_ms = 100\nretry_max_secs = 1\n\n\
         [outbound.mailboxes.support]\naddress = \"support@acme.test\"\ncompany_name = \"Acme\"\n\
         channels = {channels}\nacknowledge_new_tickets = {acknowledge}\n\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
         tls = \"plain\"\nsend_timeout_secs = 10\n\n"
    )
}

/// A control API client for one daemon.
pub struct Control<'a> {
    pub daemon: &'a Daemon,
    pub client: reqwest::Client,
}

impl<'a> Control<'a> {
    pub fn new(daemon: &'a Daemon) -> Control<'a> {
        Control {
            daemon,
            client: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.daemon.control(TOKEN, method, path, body).await
    }

    /// The mirror's view of a ticket (`GET /v1/control/tickets/{id}`).
    pub async fn ticket(&self, id: &str) -> Value {
        let (status, body) = self
            .send("GET", &format!("/v1/control/tickets/{id}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Posts to a hook and asserts it was accepted.
    pub async fn hook(&self, channel: &str, body: &Value) {
        let response = self
            .client
            .post(self.daemon.url(&format!("/hooks/{channel}")))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_success(), "{}", response.text().await.unwrap());
    }
}

/// The events of one type.
pub fn of_type<'e>(events: &'e [Value], event_type: &str) -> Vec<&'e Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}

/// Waits until `n` events of a type exist; returns every event.
pub async fn wait_events(daemon: &Daemon, event_type: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = daemon.all_events().await;
        if of_type(&events, event_type).len() >= n {
            return events;
        }
        let types: Vec<&Value> = events.iter().map(|e| &e["type"]).collect();
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} {event_type}; events {types:?}; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `[control]` table with the test token.
pub fn control(dir: &Path) -> String {
    crate::outbound_support::control_toml(dir)
}
