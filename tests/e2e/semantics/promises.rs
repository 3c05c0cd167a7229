//! Nothing promised vanishes: every `deskgate.ticket.action_requested` ends in exactly one
//! outcome event (`outbound.sent`, `.failed`, or `.suppressed` with a reason a person reads),
//! check-config warns, with the path, about an action that can never be sent for a channel
//! using its pipeline, and the shipped config promises nothing it cannot send.

use std::path::Path;
use std::time::Duration;

use super::{control, mailbox, of_type, Control};
use test_kit::smtpd::Smtpd;
use test_kit::{api_message, check_config, free_port, CheckConfig, Daemon};

const PIPELINE: &str = r#"
[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "new", label = "New", open = true },
  { id = "closed", label = "Closed", open = false },
]
[routing.pipelines.support.triggers]
customer_replied = { enabled = true, target = "new" }
agent_emailed = { enabled = false }

[[routing.pipelines.support.actions]]
status = "new"
action = "acknowledge"
template = "ticket_received"
"#;

const OUTCOMES: [&str; 3] = [
    "deskgate.outbound.sent",
    "deskgate.outbound.failed",
    "deskgate.outbound.suppressed",
];

#[tokio::test]
async fn every_action_requested_ends_in_exactly_one_outcome_event() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let config = format!(
        "{}{}[channels.web]\nkind = \"api\"\n{PIPELINE}",
        control(dir.path()),
        mailbox(smtpd.port, "[\"web\"]", false)
    );
    let daemon = Daemon::start(dir.path(), &config).await;

    // check-config names the action and the channel that can never get it, and exits 0.
    let CheckConfig { ok, stderr, .. } = check_config(daemon.config_path(), None);
    assert!(ok);
    assert!(
        stderr.contains("warning: routing.pipelines.support.actions[0]: acknowledge mail \"ticket_received\" can never be sent for channel \"api\""),
        "{stderr}"
    );
    assert!(!stderr.contains("channel \"web\""), "{stderr}");

    let control = Control::new(&daemon);
    control
        .hook(
            "api",
            &api_message("a1", "t1", "ana@example.com", "no mailbox"),
        )
        .await;
    control
        .hook("web", &api_message("w1", "t2", "bo@example.com", "mailed"))
        .await;
    control
        .hook(
            "web",
            &api_message("w2", "t3", "no-reply@shop.example", "machine"),
        )
        .await;
    smtpd.wait_for(1, Duration::from_secs(30)).await;
    super::wait_events(&daemon, "deskgate.outbound.suppressed", 2).await;
    super::wait_events(&daemon, "deskgate.outbound.sent", 1).await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let requested = of_type(&events, "deskgate.ticket.action_requested");
    assert_eq!(requested.len(), 3, "{requested:?}");
    for action in requested {
        let ticket = action["subject"].as_str().unwrap();
        let outcomes: Vec<_> = events
            .iter()
            .filter(|e| e["subject"] == ticket && OUTCOMES.contains(&e["type"].as_str().unwrap()))
            .collect();
        assert_eq!(outcomes.len(), 1, "ticket {ticket}: {outcomes:?}");
        let outcome = outcomes[0];
        let channel = action["channel"].as_str().unwrap();
        let reason = outcome["data"]["reason"].as_str().unwrap_or_default();
        match (
            channel,
            action["data"]["recipients"][0]["email"].as_str().unwrap(),
        ) {
            ("api", _) => {
                assert_eq!(outcome["type"], "deskgate.outbound.suppressed");
                assert!(
                    reason.contains("channel \"api\" is not answered by any mailbox"),
                    "{reason}"
                );
                assert_eq!(outcome["data"]["template"], "ticket_received");
            }
            (_, "no-reply@shop.example") => {
                assert_eq!(outcome["type"], "deskgate.outbound.suppressed");
                assert!(reason.contains("machine address"), "{reason}");
            }
            _ => assert_eq!(outcome["type"], "deskgate.outbound.sent", "{outcome}"),
        }
    }
    assert_eq!(smtpd.messages().len(), 1);
}

#[test]
fn the_shipped_config_promises_nothing_it_cannot_send() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/deskgate.toml");
    let CheckConfig { ok, stderr, .. } = check_config(Path::new(path), None);
    assert!(ok);
    assert!(!stderr.contains("warning"), "{stderr}");
}
