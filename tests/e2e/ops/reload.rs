//! SIGHUP: a valid config puts users, teams, routing rules, templates and rate limits in force
//! at once and names what waits for a restart; a broken one changes nothing and every problem
//! is logged.

use std::time::Duration;

use serde_json::{json, Value};

use super::{control_get, post_raw, TOKEN};
use crate::outbound_support::text_body;
use test_kit::smtpd::Smtpd;
use test_kit::{api_message, eventually, Daemon, Tables};

/// Two statuses and no triggers: all the routing this test needs.
const PIPELINE: &str = r#"
[routing.pipelines.support]
label = "Support"
statuses = [{ id = "open", label = "Open", open = true }, { id = "done", label = "Done", open = false }]
triggers = { customer_replied = { enabled = false }, agent_emailed = { enabled = false } }
"#;

/// The part of the config the test rewrites: who tickets go to, the chat's burst.
struct Live<'a> {
    users: &'a str,
    assign_to: &'a str,
    chat_burst: u32,
}

fn live_toml(live: &Live<'_>) -> String {
    format!(
        "{users}\n{PIPELINE}\n[channels.api.tickets]\npipeline = \"support\"\n\
         [channels.api.tickets.routing]\nrule = \"users_and_teams\"\nusers = [\"{assign}\"]\n\
         available_only = false\n\n[channels.chat]\nkind = \"chat\"\n\
         chat = {{ rate_limit = {{ per_minute = 1, burst = {burst} }} }}\n",
        users = live.users,
        assign = live.assign_to,
        burst = live.chat_burst,
    )
}

const ALICE: &str = "[routing.users.alice]\nname = \"Alice\"\n";
const BOB: &str = "[routing.users.bob]\nname = \"Bob\"\n";

fn hup(daemon: &Daemon) {
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

/// Waits for the `n`-th log line containing `needle`.
async fn logged(daemon: &Daemon, needle: &str, n: usize) {
    eventually(needle, Duration::from_secs(10), || async {
        daemon.log().matches(needle).count() >= n
    })
    .await;
}

/// Posts an API message on a new thread and returns who its ticket was assigned to.
async fn assignee_of_new_ticket(daemon: &Daemon, id: &str) -> Value {
    let client = reqwest::Client::new();
    let posted = client
        .post(daemon.url("/hooks/api"))
        .json(&api_message(
            id,
            &format!("thread-{id}"),
            "ana@example.com",
            "hi",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    daemon.settled().await;
    let events = daemon.all_events().await;
    let assigned = events
        .iter()
        .rev()
        .find(|e| e["type"] == "deskgate.ticket.assigned")
        .expect("an assignment");
    assigned["data"]["assignee"].clone()
}

/// Chat messages from one client (named by the trusted proxy, the test itself) until the
/// first 429; how many were admitted.
async fn chat_admitted(daemon: &Daemon, client_no: u8) -> usize {
    let client = reqwest::Client::new();
    for i in 0..10 {
        let message = json!({"visitor_token": format!("v-{client_no}"), "message_id": format!("{client_no}-{i}"), "text": "hi"});
        let response = client
            .post(daemon.url("/hooks/chat"))
            .header("x-forwarded-for", format!("203.0.113.{client_no}"))
            .json(&message)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            return i;
        }
        assert!(response.status().is_success(), "{}", response.status());
    }
    panic!("never limited");
}

/// Pushes a mail that opens a ticket on the mail channel and returns the acknowledgement's
/// plain text once it arrived.
async fn acknowledgement_text(daemon: &Daemon, smtpd: &Smtpd, n: usize) -> String {
    let mail = format!(
        "From: Customer {n} <customer{n}@example.com>\r\nTo: support@acme.test\r\n\
         Subject: Help {n}\r\nMessage-ID: <help-{n}@example.com>\r\n\r\nPlease help.\r\n"
    );
    assert_eq!(
        post_raw(daemon, "/hooks/mail", "message/rfc822", mail).await,
        202
    );
    let mails = smtpd.wait_for(n, Duration::from_secs(30)).await;
    text_body(&mails[n - 1])
}

#[tokio::test]
async fn sighup_puts_users_routing_templates_and_rate_limits_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), test_kit::free_port());
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    let template = templates.join("ticket_received.txt");
    std::fs::write(&template, "Version one for {{ customer_name }}.").unwrap();
    let fixed = format!(
        "{}[channels.mail]\nkind = \"email\"\n\n[outbound]\ntemplates_dir = \"{}\"\n\
         [outbound.mailboxes.support]\naddress = \"support@acme.test\"\ncompany_name = \"Acme\"\n\
         channels = [\"mail\"]\nacknowledge_new_tickets = true\n\
         [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\n",
        super::token_config(dir.path()),
        templates.display(),
        smtpd.port,
    );
    let before = Live {
        users: ALICE,
        assign_to: "alice",
        chat_burst: 1,
    };
    let tables = Tables {
        server: "trusted_proxies = [\"127.0.0.1\"]",
        ..Tables::default()
    };
    let extra = format!("{fixed}{}", live_toml(&before));
    let daemon = Daemon::start_with(dir.path(), tables, &extra).await;
    let config = daemon.config_path().to_owned();
    let original = std::fs::read_to_string(&config).unwrap();

    assert_eq!(assignee_of_new_ticket(&daemon, "m1").await, "alice");
    assert_eq!(chat_admitted(&daemon, 1).await, 1);
    assert!(acknowledgement_text(&daemon, &smtpd, 1)
        .await
        .contains("Version one for Customer 1."));
    // A user put through the control API overrides the config's user of the same id.
    let put = reqwest::Client::new()
        .put(daemon.url("/v1/control/users/alice"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Alice (stored)", "seat": true, "teams": []}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());

    // A new user, tickets routed to them, a new template text, a larger chat burst, and a
    // new name for alice in the config.
    let after = Live {
        users: &format!("{}{BOB}", ALICE.replace("\"Alice\"", "\"Alice Renamed\"")),
        assign_to: "bob",
        chat_burst: 3,
    };
    std::fs::write(
        &config,
        original.replace(&live_toml(&before), &live_toml(&after)),
    )
    .unwrap();
    std::fs::write(&template, "Version two for {{ customer_name }}.").unwrap();
    hup(&daemon);
    logged(&daemon, "configuration reloaded", 1).await;
    assert!(
        !daemon.log().contains("take effect only after a restart"),
        "every change was a live one"
    );

    assert_eq!(assignee_of_new_ticket(&daemon, "m2").await, "bob");
    assert_eq!(chat_admitted(&daemon, 2).await, 3);
    assert!(acknowledgement_text(&daemon, &smtpd, 2)
        .await
        .contains("Version two for Customer 2."));
    let users = control_get(&daemon, "/v1/control/users").await;
    assert_eq!(users["users"]["bob"]["name"], "Bob", "{users}");
    assert_eq!(
        users["users"]["alice"]["name"], "Alice (stored)",
        "the stored change still wins over the config's: {users}"
    );

    // Broken: several problems, each logged; the running settings stay.
    let broken = std::fs::read_to_string(&config)
        .unwrap()
        .replace("users = [\"bob\"]", "users = [\"zoe\"]")
        .replace("burst = 3", "burst = 0");
    std::fs::write(&config, broken).unwrap();
    std::fs::write(&template, "Version three {{ broken").unwrap();
    hup(&daemon);
    logged(&daemon, "configuration not reloaded", 1).await;
    let log = daemon.log();
    for problem in [
        "channels.api.tickets.routing.users[0]: unknown user \"zoe\"",
        "channels.chat.chat.rate_limit.burst: must be > 0",
    ] {
        assert!(log.contains(problem), "{problem} not logged");
    }
    assert_eq!(assignee_of_new_ticket(&daemon, "m3").await, "bob");
    assert_eq!(chat_admitted(&daemon, 3).await, 3);
    assert!(acknowledgement_text(&daemon, &smtpd, 3)
        .await
        .contains("Version two for Customer 3."));

    // A valid file with a template that does not compile is refused too, naming the file.
    std::fs::write(
        &config,
        original.replace(&live_toml(&before), &live_toml(&after)),
    )
    .unwrap();
    hup(&daemon);
    logged(&daemon, "configuration not reloaded", 2).await;
    assert!(daemon.log().contains("ticket_received.txt"));
    assert_eq!(chat_admitted(&daemon, 4).await, 3);

    let metrics = reqwest::Client::new()
        .get(daemon.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reloads = super::metric_values(&metrics, "deskgate_config_reloads_total");
    assert_eq!(reloads.get("outcome=applied"), Some(&1.0), "{reloads:?}");
    assert_eq!(reloads.get("outcome=rejected"), Some(&2.0), "{reloads:?}");
}

#[tokio::test]
async fn sighup_applies_the_log_filter_and_names_restart_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), "").await;
    let config = daemon.config_path().to_owned();
    let original = std::fs::read_to_string(&config).unwrap();
    let client = reqwest::Client::new();

    // Broken: every problem logged, nothing changes, the daemon keeps serving.
    let broken = original
        .replace("max_body_bytes = 4096", "max_body_bytes = 0")
        .replace("shutdown_grace_secs = 5", "shutdown_grace_secs = 0");
    std::fs::write(&config, broken).unwrap();
    hup(&daemon);
    logged(&daemon, "configuration not reloaded", 1).await;
    let log = daemon.log();
    assert!(log.contains("channels.api.max_body_bytes: must be > 0"));
    assert!(log.contains("server.shutdown_grace_secs: must be > 0"));
    let posted = client
        .post(daemon.url("/hooks/api"))
        .json(&api_message("m1", "t1", "ana@example.com", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202, "still serving with the old config");

    // Valid: the log filter changes live; a listener change is named as needing a restart.
    let quieter = original
        .replace("filter = \"info,deskgate=debug\"", "filter = \"warn\"")
        .replace("shutdown_grace_secs = 5", "shutdown_grace_secs = 6");
    std::fs::write(&config, quieter).unwrap();
    hup(&daemon);
    logged(&daemon, "configuration reloaded", 1).await;
    let log = daemon.log();
    let restart_line = log
        .lines()
        .find(|l| l.contains("take effect only after a restart"))
        .expect("the restart-only change is named");
    assert!(restart_line.contains("server"), "{restart_line}");
    // The new filter is live: the debug lines of the old one stop.
    let before = daemon.log().matches("DEBUG").count();
    client
        .post(daemon.url("/hooks/api"))
        .json(&api_message("m2", "t1", "ana@example.com", "again"))
        .send()
        .await
        .unwrap();
    daemon.settled().await;
    assert_eq!(daemon.log().matches("DEBUG").count(), before);
    assert!(daemon.terminate().success());
}
