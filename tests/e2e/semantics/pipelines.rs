//! Pipelines are live data: the control API moves a ticket to another pipeline and status, the
//! status reached runs its actions, and the ticket then lives by its new pipeline's statuses;
//! a reload, or check-config given the state, refuses to remove a pipeline or status that
//! stored tickets are in.

use serde_json::json;

use super::{control, of_type, Control, PIPELINE};
use test_kit::{api_message, Daemon};

pub const BILLING: &str = r#"
[routing.pipelines.billing]
label = "Billing"
statuses = [
  { id = "open", label = "Open", open = true },
  { id = "paid", label = "Paid", open = false },
]
triggers = { customer_replied = { target = "open" }, agent_emailed = { target = "open" } }

[[routing.pipelines.billing.actions]]
status = "open"
action = "notify"
template = "internal_notification"
users = ["alice"]
"#;

/// The config these tests start from: the control token, the `api` channel's tickets in
/// `support`, and the `support` and `billing` pipelines.
pub fn support_and_billing(dir: &std::path::Path) -> String {
    format!(
        "{}[channels.api.tickets]\npipeline = \"support\"\n{PIPELINE}{BILLING}",
        control(dir)
    )
}

#[tokio::test]
async fn the_control_api_moves_a_ticket_to_another_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = support_and_billing(dir.path());
    let daemon = Daemon::start(dir.path(), &config).await;
    let control = Control::new(&daemon);
    control
        .hook(
            "api",
            &api_message("m1", "t1", "ana@example.com", "invoice?"),
        )
        .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let ticket = of_type(&events, "deskgate.ticket.created")[0]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/control/tickets/{ticket}/pipeline");
    for (body, error) in [
        (
            json!({"pipeline": "sales", "status": "open"}),
            "pipeline: unknown pipeline \"sales\"",
        ),
        (
            json!({"pipeline": "billing", "status": "new"}),
            "status: \"new\" is not a status of pipeline \"billing\"",
        ),
    ] {
        let (status, answer) = control.send("PUT", &path, Some(body)).await;
        assert_eq!((status, answer["error"].as_str()), (422, Some(error)));
    }
    let (status, answer) = control
        .send(
            "PUT",
            &path,
            Some(json!({"pipeline": "billing", "status": "open"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let view = control.ticket(&ticket).await;
    assert_eq!(view["routing"]["pipeline"], "billing", "{view}");
    assert_eq!(view["routing"]["status"], "open");
    let events = daemon.all_events().await;
    let changed = of_type(&events, "deskgate.ticket.status_changed");
    assert_eq!(changed.len(), 1, "{changed:?}");
    let data = &changed[0]["data"];
    assert_eq!(
        (
            &data["old_pipeline"],
            &data["old_status"],
            &data["pipeline"],
            &data["new_status"]
        ),
        (
            &json!("support"),
            &json!("new"),
            &json!("billing"),
            &json!("open")
        )
    );
    let requested = of_type(&events, "deskgate.ticket.action_requested");
    assert_eq!(requested.len(), 1, "the status reached runs its actions");
    assert_eq!(requested[0]["data"]["status"], "open");

    // The ticket now lives by billing's statuses.
    let (status, answer) = control
        .send(
            "PUT",
            &format!("/v1/control/tickets/{ticket}/status"),
            Some(json!({"status": "paid"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let view = control.ticket(&ticket).await;
    assert_eq!(view["routing"]["open"], false, "{view}");
}

/// Rewrites the daemon's config with `edit`, sends SIGHUP, and returns the log line that
/// answers it (the `n`-th reload answer).
pub async fn reload_with(daemon: &Daemon, n: usize, edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(daemon.config_path()).unwrap();
    std::fs::write(daemon.config_path(), edit(&text)).unwrap();
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let answered = |log: &str| {
        log.matches("configuration reloaded").count() + log.matches("not reloaded").count()
    };
    test_kit::eventually("the reload", std::time::Duration::from_secs(10), || async {
        answered(&daemon.log()) >= n
    })
    .await;
    let log = daemon.log();
    log.lines()
        .filter(|l| l.contains("reloaded"))
        .nth(n - 1)
        .unwrap()
        .to_owned()
        + &log
            .split("not reloaded")
            .nth(n)
            .map(|rest| rest.lines().take(3).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
}

#[tokio::test]
async fn a_reload_or_check_config_refuses_to_strand_stored_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let config = support_and_billing(dir.path());
    let mut daemon = Daemon::start(dir.path(), &config).await;
    let control = Control::new(&daemon);
    control
        .hook("api", &api_message("m1", "t1", "ana@example.com", "hi"))
        .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let ticket = of_type(&events, "deskgate.ticket.created")[0]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let original = std::fs::read_to_string(daemon.config_path()).unwrap();

    // Removing the status the ticket is in, or renaming its pipeline, is refused.
    let answer = reload_with(&daemon, 1, |text| {
        text.replace("  { id = \"new\", label = \"New\", open = true },\n", "")
    })
    .await;
    assert!(answer.contains("not reloaded"), "{answer}");
    assert!(
        answer.contains("routing.pipelines.support.statuses: status \"new\" is gone, but 1 stored tickets are in it"),
        "{answer}"
    );
    let answer = reload_with(&daemon, 2, |_| {
        original
            .replace("routing.pipelines.support", "routing.pipelines.helpdesk")
            .replace("pipeline = \"support\"", "pipeline = \"helpdesk\"")
    })
    .await;
    assert!(
        answer.contains("routing.pipelines.support: is gone, but 1 stored tickets are in it"),
        "{answer}"
    );
    // The running config stays: the ticket still closes in its pipeline.
    let (status, body) = control
        .send(
            "PUT",
            &format!("/v1/control/tickets/{ticket}/status"),
            Some(json!({"status": "closed"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Moved to billing first, the support pipeline can go.
    let (status, body) = control
        .send(
            "PUT",
            &format!("/v1/control/tickets/{ticket}/pipeline"),
            Some(json!({"pipeline": "billing", "status": "open"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let without_support = original
        .replace("routing.pipelines.support", "routing.pipelines.helpdesk")
        .replace("pipeline = \"support\"", "pipeline = \"helpdesk\"");
    let answer = reload_with(&daemon, 3, |_| without_support.clone()).await;
    assert!(answer.contains("configuration reloaded"), "{answer}");

    // check-config on the stopped daemon's state refuses to drop billing.
    assert!(daemon.terminate().success());
    let bad = dir.path().join("no-billing.toml");
    std::fs::write(
        &bad,
        without_support
            .split("[routing.pipelines.billing]")
            .next()
            .unwrap(),
    )
    .unwrap();
    let check = test_kit::check_config(&bad, Some(&dir.path().join("state")));
    // A config that would strand tickets is a wrong config (EX_USAGE), not an unreadable one.
    assert_eq!(check.code, Some(64));
    let stderr = check.stderr;
    assert!(
        stderr.contains("routing.pipelines.billing: is gone, but 1 stored tickets are in it"),
        "{stderr}"
    );
}
