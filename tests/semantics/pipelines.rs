//! Pipelines are live data: the control API moves a ticket to another pipeline and status, the
//! status reached runs its actions, and the ticket then lives by its new pipeline's statuses.

use serde_json::json;

use super::common::{api_message, Daemon};
use super::{control, of_type, Control, PIPELINE};

const BILLING: &str = r#"
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

#[tokio::test]
async fn the_control_api_moves_a_ticket_to_another_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[channels.api.tickets]\npipeline = \"support\"\n{PIPELINE}{BILLING}",
        control(dir.path())
    );
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
