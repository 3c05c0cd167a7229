//! A config that removes or renames a pipeline or status stored tickets are in says where they
//! go (`[[routing.moves]]`): a reload or a start moves them once, each with its
//! `deskgate.ticket.status_changed` (`cause = "config_move"`) and the reached status's actions;
//! check-config refuses a move from what still exists or to what does not, and a start refuses
//! a config that strands tickets without one.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::pipelines::{reload_with, support_and_billing, BILLING};
use super::{control, of_type, Control, PIPELINE};
use test_kit::{api_message, check_config, daemon_bin, eventually, CheckConfig, Daemon};

/// The events that a config move emitted, in order.
fn config_moves(events: &[Value]) -> Vec<&Value> {
    of_type(events, "deskgate.ticket.status_changed")
        .into_iter()
        .filter(|e| e["data"]["cause"] == "config_move")
        .collect()
}

/// `(old_pipeline, old_status, pipeline, new_status)` of a status event.
fn route(event: &Value) -> (&Value, &Value, &Value, &Value) {
    let data = &event["data"];
    (
        &data["old_pipeline"],
        &data["old_status"],
        &data["pipeline"],
        &data["new_status"],
    )
}

/// Sends one API message and returns the ticket it opened.
async fn new_ticket(daemon: &Daemon, control: &Control<'_>, n: usize) -> String {
    let (id, thread) = (format!("m{n}"), format!("t{n}"));
    control
        .hook("api", &api_message(&id, &thread, "ana@example.com", "hi"))
        .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    of_type(&events, "deskgate.ticket.created")[n - 1]["subject"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `PUT /v1/control/tickets/{ticket}/{what}` with `body`; the answer's status.
async fn put(control: &Control<'_>, ticket: &str, what: &str, body: Value) -> u16 {
    let path = format!("/v1/control/tickets/{ticket}/{what}");
    control.send("PUT", &path, Some(body)).await.0
}

#[tokio::test]
async fn a_reload_moves_the_tickets_of_a_removed_status_and_pipeline_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = support_and_billing(dir.path());
    let mut daemon = Daemon::start(dir.path(), &config).await;
    let control = Control::new(&daemon);
    // One ticket stays in support's "new", one goes to "waiting_on_us" (which stays), one to
    // billing.
    let renamed = new_ticket(&daemon, &control, 1).await;
    let kept = new_ticket(&daemon, &control, 2).await;
    let billed = new_ticket(&daemon, &control, 3).await;
    let waiting = json!({"status": "waiting_on_us"});
    assert_eq!(put(&control, &kept, "status", waiting).await, 200);
    let billing = json!({"pipeline": "billing", "status": "open"});
    assert_eq!(put(&control, &billed, "pipeline", billing).await, 200);
    // In billing, "closed" is no status.
    let closed = json!({"status": "closed"});
    assert_eq!(put(&control, &billed, "status", closed.clone()).await, 422);

    // "new" is renamed "fresh", and billing is gone; the moves say where their tickets go.
    let moves = "\n[[routing.moves]]\nfrom_pipeline = \"support\"\nfrom_status = \"new\"\n\
                 to_pipeline = \"support\"\nto_status = \"fresh\"\n\n\
                 [[routing.moves]]\nfrom_pipeline = \"billing\"\n\
                 to_pipeline = \"support\"\nto_status = \"waiting_on_us\"\n";
    let answer = reload_with(&daemon, 1, |text| {
        let text = text
            .replace(
                "{ id = \"new\", label = \"New\", open = true }",
                "{ id = \"fresh\", label = \"Fresh\", open = true }",
            )
            .replace(BILLING, "");
        format!("{text}{moves}")
    })
    .await;
    assert!(answer.contains("configuration reloaded"), "{answer}");
    eventually("the config's moves", Duration::from_secs(20), || async {
        config_moves(&daemon.all_events().await).len() >= 2
    })
    .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let moved = config_moves(&events);
    assert_eq!(moved.len(), 2, "one event for each ticket moved: {moved:?}");
    let of = |ticket: &str| {
        let found: Vec<&&Value> = moved.iter().filter(|e| e["subject"] == ticket).collect();
        assert_eq!(found.len(), 1, "{ticket}: {moved:?}");
        route(found[0])
    };
    assert_eq!(
        of(&renamed),
        (
            &json!("support"),
            &json!("new"),
            &json!("support"),
            &json!("fresh")
        )
    );
    assert_eq!(
        of(&billed),
        (
            &json!("billing"),
            &json!("open"),
            &json!("support"),
            &json!("waiting_on_us")
        )
    );
    let view = control.ticket(&renamed).await;
    assert_eq!(view["routing"]["status"], "fresh", "{view}");
    let view = control.ticket(&kept).await;
    assert_eq!(
        view["routing"]["status"], "waiting_on_us",
        "untouched: {view}"
    );
    let view = control.ticket(&billed).await;
    assert_eq!(
        (&view["routing"]["pipeline"], &view["routing"]["status"]),
        (&json!("support"), &json!("waiting_on_us")),
        "{view}"
    );

    // The moved tickets live by their new statuses: they close.
    for ticket in [&renamed, &billed] {
        assert_eq!(put(&control, ticket, "status", closed.clone()).await, 200);
        assert_eq!(control.ticket(ticket).await["routing"]["open"], false);
    }

    // A restart with the same config moves nothing again.
    let before = daemon.all_events().await.len();
    assert!(daemon.terminate().success());
    daemon.restart().await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(events.len(), before, "{:?}", &events[before..]);
    let journaled = daemon.log().matches("journaled the config's moves").count();
    assert_eq!(journaled, 1);
}

#[tokio::test]
async fn a_restart_moves_tickets_into_a_status_whose_actions_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = support_and_billing(dir.path());
    let mut daemon = Daemon::start(dir.path(), &config).await;
    let control = Control::new(&daemon);
    let ticket = new_ticket(&daemon, &control, 1).await;
    let billing = json!({"pipeline": "billing", "status": "open"});
    assert_eq!(put(&control, &ticket, "pipeline", billing).await, 200);
    assert!(daemon.terminate().success());

    // Billing goes; its tickets are closed in support, whose "closed" now notifies alice.
    let original = std::fs::read_to_string(daemon.config_path()).unwrap();
    let unmoved = original.replace(BILLING, "")
        + "\n[[routing.pipelines.support.actions]]\nstatus = \"closed\"\naction = \"notify\"\n\
           template = \"internal_notification\"\nusers = [\"alice\"]\n";
    let moved = unmoved.clone()
        + "\n[[routing.moves]]\nfrom_pipeline = \"billing\"\n\
           to_pipeline = \"support\"\nto_status = \"closed\"\n";
    // check-config on the state refuses the config without the move and accepts it with.
    let state = dir.path().join("state");
    std::fs::write(daemon.config_path(), &unmoved).unwrap();
    let CheckConfig { ok, stderr, .. } = check_config(daemon.config_path(), Some(&state));
    assert!(!ok);
    assert!(
        stderr.contains("routing.pipelines.billing: is gone, but 1 stored tickets are in it"),
        "{stderr}"
    );
    std::fs::write(daemon.config_path(), &moved).unwrap();
    let CheckConfig { ok, stderr, .. } = check_config(daemon.config_path(), Some(&state));
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("routing.moves will move 1 stored tickets"),
        "{stderr}"
    );

    daemon.restart().await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let changed = config_moves(&events);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        route(changed[0]),
        (
            &json!("billing"),
            &json!("open"),
            &json!("support"),
            &json!("closed")
        )
    );
    let at = events
        .iter()
        .position(|e| std::ptr::eq(e, changed[0]))
        .unwrap();
    let after = &events[at..];
    // Closing a ticket closes its conversation ...
    let closed = of_type(after, "deskgate.conversation.closed");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(
        (&closed[0]["data"]["ticket"], &closed[0]["data"]["reason"]),
        (&json!(ticket), &json!("ticket_closed"))
    );
    // ... and the status reached runs its action.
    let requested = of_type(after, "deskgate.ticket.action_requested");
    assert_eq!(requested.len(), 1, "{requested:?}");
    let data = &requested[0]["data"];
    assert_eq!(
        (
            &data["status"],
            &data["action"],
            &data["recipients"][0]["id"]
        ),
        (&json!("closed"), &json!("notify"), &json!("alice")),
        "{data}"
    );
    let view = Control::new(&daemon).ticket(&ticket).await;
    assert_eq!(view["routing"]["open"], false, "{view}");
}

#[tokio::test]
async fn check_config_refuses_moves_from_what_exists_or_to_what_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moves.toml");
    let moves = [
        ("billing", None, "support", "new"),
        ("support", Some("new"), "billing", "open"),
        ("sales", None, "helpdesk", "open"),
        ("legacy", None, "billing", "new"),
        ("sales", None, "support", "new"),
        ("support", Some("pending"), "support", "waiting_on_us"),
    ];
    let mut text = format!(
        "[state]\ndir = \"{}\"\n\n[channels.api]\nkind = \"api\"\n\
         [channels.api.tickets]\npipeline = \"support\"\n{PIPELINE}{BILLING}",
        dir.path().join("state").display()
    );
    for (from_pipeline, from_status, to_pipeline, to_status) in moves {
        text += &format!("\n[[routing.moves]]\nfrom_pipeline = \"{from_pipeline}\"\n");
        if let Some(status) = from_status {
            text += &format!("from_status = \"{status}\"\n");
        }
        text += &format!("to_pipeline = \"{to_pipeline}\"\nto_status = \"{to_status}\"\n");
    }
    std::fs::write(&path, text).unwrap();
    let CheckConfig { ok, stderr, .. } = check_config(&path, None);
    assert!(!ok);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("routing.moves"))
        .map(str::trim)
        .collect();
    assert_eq!(
        problems,
        [
            "routing.moves[0].from_pipeline: pipeline \"billing\" still exists: a move is for a \
             pipeline the config removed or renamed (it would keep moving new tickets); name a \
             removed status with from_status, or remove the pipeline",
            "routing.moves[1].from_status: status \"new\" of pipeline \"support\" still exists: \
             a move is for a status the config removed or renamed (it would keep moving new \
             tickets)",
            "routing.moves[2].to_pipeline: unknown pipeline \"helpdesk\"",
            "routing.moves[3].to_status: \"new\" is not a status of pipeline \"billing\"",
            "routing.moves[4]: moves the same tickets as routing.moves[2]",
        ],
        "{stderr}"
    );
}

#[tokio::test]
async fn a_start_refuses_a_config_that_strands_stored_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[channels.api.tickets]\npipeline = \"support\"\n{PIPELINE}",
        control(dir.path())
    );
    let mut daemon = Daemon::start(dir.path(), &config).await;
    let control = Control::new(&daemon);
    new_ticket(&daemon, &control, 1).await;
    assert!(daemon.terminate().success());
    let original = std::fs::read_to_string(daemon.config_path()).unwrap();
    let stranding = original.replace("  { id = \"new\", label = \"New\", open = true },\n", "");
    std::fs::write(daemon.config_path(), stranding).unwrap();
    let state = dir.path().join("state");
    let CheckConfig {
        ok,
        stderr: checked,
        ..
    } = check_config(daemon.config_path(), Some(&state));
    assert!(!ok);
    let problem = checked
        .lines()
        .find(|l| l.contains("routing.pipelines.support.statuses"))
        .unwrap_or_else(|| panic!("{checked}"))
        .trim()
        .to_owned();
    assert!(
        problem.contains("status \"new\" is gone, but 1 stored tickets are in it"),
        "{problem}"
    );

    let mut child = Command::new(daemon_bin())
        .args(["run", "--config"])
        .arg(daemon.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("deskgate started on a config that strands a stored ticket");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    let file = daemon.config_path().display().to_string();
    assert!(
        stderr.contains(&format!("{file} is not a valid config:\n  {problem}")),
        "in check-config's words ({problem}): {stderr}"
    );

    // The state is as it was: the old config starts on it.
    std::fs::write(daemon.config_path(), original).unwrap();
    daemon.restart().await;
}
