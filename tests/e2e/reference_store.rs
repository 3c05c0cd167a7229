//! The reference consumer (`examples/reference_store/`) against the real daemon: mixed
//! traffic on every channel kind (API, mail pushed by an MTA, web form, chat, Messenger,
//! WhatsApp) with control API changes (status, owner, pipeline, ticket merge, splits, spam,
//! deletion, contact owner, merge and erasure), deskgate and the consumer each killed with
//! SIGKILL twice along the way. Once the consumer's cursor reaches deskgate's last event, its
//! SQLite tables must equal deskgate's own view through the control API: every ticket (number,
//! contact, subject, pipeline, status, owner, conversations) and every contact (name, owner,
//! identities, merged or erased), and the consumer holds nothing live that deskgate does not.
//!
//! The consumer is the example's binary, which the test builds with `cargo build --example`
//! in its own target directory and profile (see [`consumer_bin`]).

mod compare;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::messaging_support::{meta_table, post_meta};
use crate::outbound_support::{control_toml, TOKEN};
use compare::{compare, Compared};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use test_kit::nats::NatsServer;
use test_kit::{api_message, eventually, push_mail, Daemon, SUPPORT_PIPELINE};

const CUSTOMERS: usize = 6;
/// The JetStream stream deskgate's sink publishes to, in the JetStream test.
const STREAM: &str = "DGTEST";
const ROUNDS: usize = 12;

const CONFIG: &str = r#"
[contacts]
default_region = "US"

[channels.api.tickets]
pipeline = "support"
[channels.api.tickets.routing]
rule = "users_and_teams"
users = ["alice", "bob"]

[channels.mail]
kind = "email"
[channels.mail.tickets]
pipeline = "support"

[channels.web]
kind = "form"
[channels.web.tickets]
pipeline = "support"

[channels.chat]
kind = "chat"
[channels.chat.tickets]
pipeline = "support"

[routing.users.alice]
name = "Alice"
email = "alice@desk.example"
seat = true

[routing.users.bob]
name = "Bob"
email = "bob@desk.example"
seat = true

[routing.pipelines.billing]
label = "Billing"
statuses = [
  { id = "open", label = "Open", open = true },
  { id = "done", label = "Done", open = false },
]
[routing.pipelines.billing.triggers]
customer_replied = { enabled = true, target = "open" }
agent_emailed = { enabled = false }
"#;

/// The Meta channels, which need the test's app secret.
fn meta_channels(dir: &Path) -> String {
    let meta = meta_table(dir);
    format!(
        "[channels.fb]\nkind = \"messenger\"\n{meta}\n[channels.fb.tickets]\npipeline = \"support\"\n\n\
         [channels.wa]\nkind = \"whatsapp\"\n{meta}\n[channels.wa.tickets]\npipeline = \"support\"\n"
    )
}

fn email(customer: usize) -> String {
    format!("cust{customer}@example.com")
}

fn phone(customer: usize) -> String {
    format!("1415555010{customer}")
}

/// The example's binary, built here with the test's own cargo, profile and target directory:
/// `cargo test --all-targets` builds examples only as test harnesses (never
/// `target/<profile>/examples/reference_store`), and `cargo test --test e2e reference_store::` not
/// at all, so a test that only looked for the binary would run a stale one, or none.
fn consumer_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // What cargo sets for the test process is not the build's environment: a build script
    // that watches such a variable (ring's watches CARGO_MANIFEST_DIR) would see it changed and
    // rebuild half the tree, twice a run.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || ["OUT_DIR", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&&*name);
        if set_by_cargo {
            command.env_remove(&*name);
        }
    }
    let build_args = [
        "build",
        "--example",
        "reference_store",
        "--profile",
        profile,
    ];
    let output = command
        .args(build_args)
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo build --example reference_store: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    profile_dir.join("examples/reference_store")
}

/// The consumer as a child process, killed with SIGKILL and restarted on the same database.
struct Consumer {
    command: Command,
    child: Option<Child>,
    db: PathBuf,
}

impl Consumer {
    /// Starts the consumer on `dir/store.sqlite`, following what `source` says (`--url …` or
    /// `--nats …`).
    fn start(dir: &Path, source: &[String]) -> Consumer {
        let db = dir.join("store.sqlite");
        let log = std::fs::File::create(dir.join("consumer.log")).unwrap();
        let mut command = Command::new(consumer_bin());
        command
            .args(source)
            .arg("--db")
            .arg(&db)
            // Small pages and short polls: many transactions, so kills land among them.
            .args(["--limit", "7", "--wait-secs", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut consumer = Consumer {
            command,
            child: None,
            db,
        };
        consumer.restart();
        consumer
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.child = Some(self.command.spawn().expect("the consumer starts"));
    }

    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The consumer's cursor, read from its database as any reader would.
    fn cursor(&self) -> u64 {
        let Ok(db) = Connection::open(&self.db) else {
            return 0;
        };
        db.query_row("SELECT last_sequence FROM cursor", [], |row| {
            row.get::<_, i64>(0)
        })
        .optional()
        .ok()
        .flatten()
        .map_or(0, |seq| seq as u64)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends the traffic and the control API requests, and reads deskgate's view.
struct Run {
    daemon: Daemon,
    client: reqwest::Client,
}

impl Run {
    async fn hook(&self, channel: &str, body: Value) {
        let response = self
            .client
            .post(self.daemon.url(&format!("/hooks/{channel}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_success(), "{channel}: {status}");
    }

    async fn control(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.daemon.control(TOKEN, method, path, body).await
    }

    /// A control API change that must succeed.
    async fn change(&self, method: &str, path: &str, body: Option<Value>) {
        let (status, answer) = self.control(method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }

    /// `PUT /v1/control/{what}` with `body`, which must succeed.
    async fn put(&self, what: String, body: Value) {
        self.change("PUT", &format!("/v1/control/{what}"), Some(body))
            .await;
    }

    /// `POST /v1/control/{what}`, which must succeed.
    async fn post(&self, what: String, body: Option<Value>) {
        self.change("POST", &format!("/v1/control/{what}"), body)
            .await;
    }

    /// Where the message with this external id went: `(ticket, conversation, message id)`
    /// from its message event.
    async fn placed(&self, external_id: &str) -> (String, String, String) {
        self.daemon.settled().await;
        let events = self.daemon.all_events().await;
        let event = events
            .iter()
            .rev()
            .find(|e| e["data"]["message"]["external_id"] == external_id)
            .unwrap_or_else(|| panic!("no message event for {external_id}"));
        let text = |v: &Value| v.as_str().unwrap().to_owned();
        let data = &event["data"];
        (
            text(&data["ticket"]["id"]),
            text(&data["conversation"]["id"]),
            text(&data["message"]["id"]),
        )
    }

    async fn contact_of(&self, query: &str) -> String {
        let (status, body) = self
            .control("GET", &format!("/v1/control/contacts?{query}"), None)
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        body["contact"]["id"].as_str().unwrap().to_owned()
    }

    /// One round of traffic on every channel; which customer writes where depends on `r`.
    async fn traffic(&self, r: usize) {
        let c = r % CUSTOMERS;
        let mut api = api_message(&format!("api-{r}"), &format!("api-t{c}"), &email(c), "hi");
        api["from"]["name"] = json!(format!("Customer {c}"));
        self.hook("api", api).await;

        // Mail: a new thread on even rounds, a reply to it on odd ones.
        let from = (r / 2) % CUSTOMERS;
        let mut head = format!(
            "From: Customer {from} <{}>\r\nTo: support@acme.test\r\nSubject: Order {}\r\n\
             Date: {}\r\nMessage-ID: <mail-{r}@example.com>\r\n",
            email(from),
            r / 2,
            chrono::Utc::now().to_rfc2822()
        );
        if r % 2 == 1 {
            head.push_str(&format!("In-Reply-To: <mail-{}@example.com>\r\n", r - 1));
        }
        let raw = format!("{head}Content-Type: text/plain\r\n\r\nmail {r}\r\n");
        let status = push_mail(&self.daemon, "mail", raw).await;
        assert!((200..300).contains(&status), "mail-{r}: {status}");

        if r.is_multiple_of(3) {
            let form = json!({ "email": email(c), "phone": format!("+{}", phone(c)),
                "name": format!("Customer {c}"), "subject": "Form", "description": format!("form {r}"),
                "submission_id": format!("form-{r}") });
            self.hook("web", form).await;
        }
        // A visitor gives their address on their second visit: the visitor's contact merges.
        let mut chat = json!({ "visitor_token": format!("v{c}"), "message_id": format!("chat-{r}"),
            "text": format!("chat {r}") });
        if r >= CUSTOMERS {
            chat["email"] = json!(email(c));
        }
        self.hook("chat", chat).await;
        match r % 4 {
            1 => self.whatsapp(r, c).await,
            3 => self.messenger(r, c).await,
            _ => {}
        }
    }

    async fn whatsapp(&self, r: usize, c: usize) {
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": "pn1" },
            "contacts": [{ "profile": { "name": format!("Customer {c}") }, "wa_id": phone(c) }],
            "messages": [{ "from": phone(c), "id": format!("wamid.{r}"),
                "timestamp": chrono::Utc::now().timestamp().to_string(), "type": "text",
                "text": { "body": format!("whatsapp {r}") } }],
            "statuses": [{ "id": format!("wamid.out{r}"), "status": "delivered",
                "timestamp": chrono::Utc::now().timestamp().to_string(), "recipient_id": phone(c) }],
        });
        let body = json!({ "object": "whatsapp_business_account", "entry": [
            { "id": "waba", "changes": [{ "field": "messages", "value": value }] } ]});
        self.meta("wa", body).await;
    }

    async fn messenger(&self, r: usize, c: usize) {
        let at = chrono::Utc::now().timestamp_millis();
        let body = json!({ "object": "page", "entry": [{ "id": "p1", "time": at, "messaging": [
            { "sender": { "id": format!("u{c}") }, "recipient": { "id": "p1" }, "timestamp": at,
              "message": { "mid": format!("m.{r}"), "text": format!("messenger {r}") } } ] }] });
        self.meta("fb", body).await;
    }

    async fn meta(&self, channel: &str, body: Value) {
        let body = serde_json::to_vec(&body).unwrap();
        let (status, answer) = post_meta(&self.client, &self.daemon, channel, &body).await;
        assert_eq!(status, 200, "{channel}: {answer}");
    }

    /// The control API changes made after round `r`.
    async fn changes(&self, r: usize) {
        match r {
            2 => {
                let (ticket, _, _) = self.placed("api-0").await;
                let status = json!({ "status": "waiting_on_us" });
                self.put(format!("tickets/{ticket}/status"), status).await;
                let owner = json!({ "owner": "bob" });
                self.put(format!("tickets/{ticket}/owner"), owner).await;
            }
            // The mail thread of rounds 2-3 joins the API ticket of round 1 ...
            4 => self.merge_tickets("api-1", "mail-2@example.com").await,
            5 => {
                // ... and leaves it again, whole, on a ticket of its own.
                let (_, conversation, _) = self.placed("mail-2@example.com").await;
                self.post(format!("conversations/{conversation}/split"), None)
                    .await;
            }
            6 => {
                self.hook(
                    "api",
                    api_message("spam-1", "spam-t", "spammer@example.com", "buy"),
                )
                .await;
                let (_, conversation, _) = self.placed("spam-1").await;
                self.post(format!("conversations/{conversation}/spam"), None)
                    .await;
            }
            7 => {
                // The reply of round 7 (and its replies) split off the mail thread of round 6.
                let (_, conversation, message) = self.placed("mail-7@example.com").await;
                let body = json!({ "messages": [message] });
                self.post(format!("conversations/{conversation}/split"), Some(body))
                    .await;
                // The Messenger customer of round 3 is customer 3: merged by hand.
                let person = self.contact_of(&format!("email={}", email(3))).await;
                let psid = self.contact_of("channel=fb&id=psid:p1:u3").await;
                let body = json!({ "from": psid });
                self.post(format!("contacts/{person}/merge"), Some(body))
                    .await;
            }
            8 => {
                // Customer 3 with their email, phone and Messenger id (the psid never writes again).
                let erased = self.contact_of(&format!("email={}", email(3))).await;
                self.change("DELETE", &format!("/v1/control/contacts/{erased}"), None)
                    .await;
                let owned = self.contact_of(&format!("email={}", email(1))).await;
                self.put(
                    format!("contacts/{owned}/owner"),
                    json!({ "owner": "alice" }),
                )
                .await;
            }
            9 => {
                // Closed, then the customer writes again: the trigger reopens it.
                let (ticket, _, _) = self.placed("api-9").await;
                let closed = json!({ "status": "closed" });
                self.put(format!("tickets/{ticket}/status"), closed).await;
                self.hook("api", api_message("api-9b", "api-t3", &email(3), "again"))
                    .await;
            }
            10 => {
                let (moved, _, _) = self.placed("api-10").await;
                let billing = json!({ "pipeline": "billing", "status": "open" });
                self.put(format!("tickets/{moved}/pipeline"), billing).await;
                let (deleted, _, _) = self.placed("form-9").await;
                self.change("DELETE", &format!("/v1/control/tickets/{deleted}"), None)
                    .await;
                // A merge that stays: the form ticket of round 6 joins customer 0's API ticket.
                self.merge_tickets("api-6", "form-6").await;
                let (owned, _, _) = self.placed("v4:chat-10").await;
                self.put(format!("tickets/{owned}/owner"), json!({ "owner": null }))
                    .await;
            }
            _ => {}
        }
    }

    /// Merges the ticket of one message into the ticket of another.
    async fn merge_tickets(&self, survivor: &str, merged: &str) {
        let (survivor, _, _) = self.placed(survivor).await;
        let (merged, _, _) = self.placed(merged).await;
        let body = json!({ "merged": merged });
        self.post(format!("tickets/{survivor}/merge"), Some(body))
            .await;
    }
}

/// deskgate with every channel kind and the consumer following it, in one directory: over
/// `GET /v1/events`, or through JetStream when given a NATS server (deskgate then has a sink
/// publishing to it).
async fn start(dir: &Path, nats: Option<&NatsServer>) -> (Run, Consumer) {
    let sink = nats.map_or(String::new(), |nats| {
        format!(
            "[sinks.js]\nkind = \"nats\"\n[sinks.js.nats]\nservers = [\"{}\"]\n\
             stream = \"{STREAM}\"\nsubject_prefix = \"dgtest.events\"\n",
            nats.url()
        )
    });
    let config = format!(
        "{}{CONFIG}{SUPPORT_PIPELINE}{}{sink}",
        control_toml(dir),
        meta_channels(dir)
    );
    let run = Run {
        daemon: Daemon::start(dir, &config).await,
        client: reqwest::Client::new(),
    };
    let source: Vec<String> = match nats {
        None => vec![
            "--url".into(),
            run.daemon.url(""),
            "--token-file".into(),
            dir.join("control-token").display().to_string(),
        ],
        Some(nats) => [
            "--nats",
            &nats.url(),
            "--stream",
            STREAM,
            "--durable",
            "store",
        ]
        .map(String::from)
        .to_vec(),
    };
    let consumer = Consumer::start(dir, &source);
    (run, consumer)
}

/// Waits until the consumer has applied deskgate's last event, then compares.
async fn caught_up_and_compared(run: &Run, consumer: &Consumer) -> Compared {
    run.daemon.settled().await;
    let events = run.daemon.all_events().await;
    let last: u64 = events.last().unwrap()["sequence"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    eventually(
        "the consumer to reach deskgate's last event",
        Duration::from_secs(60),
        || async { consumer.cursor() >= last },
    )
    .await;
    assert_eq!(consumer.cursor(), last);
    let store = Connection::open(&consumer.db).unwrap();
    let compared = compare(&run.daemon, &store, &events).await;
    eprintln!("compared: {compared:?}");
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_store_ends_equal_to_deskgates_view_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, mut consumer) = start(dir.path(), None).await;
    for r in 0..ROUNDS {
        run.traffic(r).await;
        run.changes(r).await;
        // kill -9 of each side, twice, while the other goes on.
        if r == 3 || r == 8 {
            run.daemon.kill();
            run.daemon.restart().await;
        }
        if r == 1 || r == 6 {
            consumer.kill();
            run.traffic(ROUNDS + r).await;
            consumer.restart();
        }
    }
    let compared = caught_up_and_compared(&run, &consumer).await;
    // The run did what it is meant to check: a comparison of nothing proves nothing.
    assert!(compared.live_tickets >= 30, "{compared:?}");
    assert!(compared.gone_tickets >= 4, "{compared:?}");
    assert!(compared.live_contacts >= 10, "{compared:?}");
    assert!(compared.absorbed_contacts >= 5, "{compared:?}");
    // The erased contact, and the Messenger contact merged into it before.
    assert_eq!(compared.erased_contacts, 2, "{compared:?}");
}

/// The same through deskgate's JetStream sink and a durable consumer, which delivers the
/// events of different tickets in any order: the store puts them back in sequence order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_store_follows_jetstream_as_well() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let (mut run, mut consumer) = start(dir.path(), Some(&nats)).await;
    for r in 0..ROUNDS {
        run.traffic(r).await;
        run.changes(r).await;
        if r == 4 {
            run.daemon.kill();
            run.daemon.restart().await;
        }
        if r == 2 || r == 7 {
            consumer.kill();
            consumer.restart();
        }
    }
    let compared = caught_up_and_compared(&run, &consumer).await;
    assert!(compared.live_tickets >= 25, "{compared:?}");
    assert!(compared.absorbed_contacts >= 5, "{compared:?}");
}

/// A ticket closed and reopened through the control API: deskgate reopens its conversation
/// (the ticket's only one) and says so with `conversation.reopened`, which the store follows
/// (the status events do not say whether a status is open).
#[tokio::test]
async fn a_ticket_reopened_through_the_control_api_reopens_its_conversation_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (run, consumer) = start(dir.path(), None).await;
    run.hook("api", api_message("m1", "t1", &email(0), "hi"))
        .await;
    let (ticket, _, _) = run.placed("m1").await;
    for status in ["closed", "new"] {
        let body = json!({ "status": status });
        run.put(format!("tickets/{ticket}/status"), body).await;
    }
    caught_up_and_compared(&run, &consumer).await;
}

/// Contact A's ticket takes contact B's conversation (a ticket merge), A's own conversation
/// leaves it (a split), then A is merged into C. The first ticket holds none of A's
/// conversations but is A's: deskgate moves it to C with A's other tickets, as the
/// `contact.merged` event tells a store (every ticket of A is C's now).
#[tokio::test]
async fn a_contact_merge_moves_every_ticket_of_the_absorbed_contact() {
    let dir = tempfile::tempdir().unwrap();
    let (run, consumer) = start(dir.path(), None).await;
    for (id, customer) in [("a", 0), ("b", 1), ("c", 2)] {
        let thread = format!("t-{id}");
        run.hook("api", api_message(id, &thread, &email(customer), "hi"))
            .await;
    }
    run.merge_tickets("a", "b").await;
    let (_, conversation, _) = run.placed("a").await;
    run.post(format!("conversations/{conversation}/split"), None)
        .await;
    let a = run.contact_of(&format!("email={}", email(0))).await;
    let c = run.contact_of(&format!("email={}", email(2))).await;
    run.post(format!("contacts/{c}/merge"), Some(json!({ "from": a })))
        .await;
    caught_up_and_compared(&run, &consumer).await;
}
