//! Forms set the ticket they open: a submitted (or hidden) field wins over the form's
//! `defaults`, which win over the channel's `[tickets]` defaults, which win over the
//! pipeline's first open status. A value naming no status is accepted with the defaults, the
//! ticket event names the ignored field and why, and a counter counts it; check-config checks
//! the form's defaults.

use serde_json::{json, Value};

use super::{control, of_type, Control, PIPELINE};
use test_kit::{check_config, CheckConfig, Daemon};

fn form_config(dir: &std::path::Path, default_status: &str) -> String {
    format!(
        "{}[channels.contact]\nkind = \"form\"\n\
         [channels.contact.form]\nhidden = [\"status\", \"priority\"]\n\
         defaults = {{ status = \"{default_status}\", category = \"billing\" }}\n\
         [channels.contact.tickets]\npipeline = \"support\"\npriority = \"low\"\n{PIPELINE}",
        control(dir)
    )
}

#[tokio::test]
async fn hidden_fields_then_form_defaults_then_channel_defaults_open_the_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &form_config(dir.path(), "waiting_on_contact")).await;
    let control = Control::new(&daemon);
    let submissions = [
        json!({"email": "a@example.com", "subject": "s1", "description": "d",
               "status": "waiting_on_us", "priority": "high"}),
        json!({"email": "b@example.com", "subject": "s2", "description": "d", "status": "bogus"}),
        json!({"email": "c@example.com", "subject": "s3", "description": "d"}),
    ];
    for submission in &submissions {
        control.hook("contact", submission).await;
    }
    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created");
    assert_eq!(created.len(), 3, "every submission opened a ticket");
    let by_subject = |subject: &str| -> &Value {
        created
            .iter()
            .find(|e| e["data"]["ticket"]["subject"] == subject)
            .unwrap()
    };
    // (status, priority, category) of the event and of the mirror.
    let expected = [
        ("s1", "waiting_on_us", "high"),
        ("s2", "waiting_on_contact", "low"),
        ("s3", "waiting_on_contact", "low"),
    ];
    for (subject, status, priority) in expected {
        let event = by_subject(subject);
        let ticket = &event["data"]["ticket"];
        assert_eq!(
            (&ticket["status"], &ticket["priority"], &ticket["category"]),
            (&json!(status), &json!(priority), &json!("billing")),
            "{subject}: {ticket}"
        );
        let view = control.ticket(event["subject"].as_str().unwrap()).await;
        let routing = &view["routing"];
        assert_eq!(routing["status"], status, "{view}");
        assert_eq!(routing["priority"], priority, "{view}");
        assert_eq!(routing["category"], "billing", "{view}");
    }
    let ignored = &by_subject("s2")["data"]["ticket"]["ignored"];
    assert_eq!(ignored[0]["field"], "status", "{ignored}");
    assert_eq!(ignored[0]["value"], "bogus");
    assert_eq!(
        ignored[0]["reason"],
        "\"bogus\" is not a status of pipeline \"support\""
    );
    assert!(by_subject("s1")["data"]["ticket"].get("ignored").is_none());

    let (_, metrics) = control.send("GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    let line = metrics
        .lines()
        // Every channel's counter is on the page from start-up, at zero.
        .find(|l| {
            l.starts_with("deskgate_form_fields_ignored_total")
                && l.contains("channel=\"contact\"")
                && l.contains("field=\"status\"")
        })
        .unwrap_or_else(|| panic!("no counter in {metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}

#[test]
fn check_config_checks_the_form_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deskgate.toml");
    let text = format!(
        "[channels.api]\nkind = \"api\"\n{}",
        form_config(dir.path(), "solved")
    );
    std::fs::write(&path, text).unwrap();
    let CheckConfig { ok, stderr, .. } = check_config(&path, None);
    assert!(!ok);
    assert!(
        stderr.contains(
            "channels.contact.form.defaults.status: \"solved\" is not a status of pipeline \"support\""
        ),
        "{stderr}"
    );
}
