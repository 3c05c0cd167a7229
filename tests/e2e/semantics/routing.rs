//! Routing works out of the box: configured users start `available` unless the config says
//! otherwise, a ticket goes only to a user who exists, has a seat and (where asked) is
//! available, also after a reload, and an owner naming an unknown user is refused with 422.

use std::time::Duration;

use serde_json::{json, Value};

use super::{control, of_type, Control};
use test_kit::{api_message, eventually, Daemon};

const PIPELINE: &str = r#"
[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "new", label = "New", open = true },
  { id = "closed", label = "Closed", open = false },
]
triggers = { customer_replied = { target = "new" }, agent_emailed = { target = "new" } }
"#;

fn config(dir: &std::path::Path, users: &str, pool: &str) -> String {
    format!(
        "{}[channels.api.tickets]\npipeline = \"support\"\n\
         [channels.api.tickets.routing]\nrule = \"users_and_teams\"\nusers = {pool}\n\
         available_only = true\n{users}{PIPELINE}",
        control(dir)
    )
}

const USERS: &str = "[routing.users.alice]\nname = \"Alice\"\n\
    [routing.users.bob]\nname = \"Bob\"\navailability = \"offline\"\n\
    [routing.users.carl]\nname = \"Carl\"\nseat = false\n";

/// Posts a message on a new thread; returns the `ticket.assigned` event of its ticket.
async fn assigned(daemon: &Daemon, id: &str) -> Value {
    let control = Control::new(daemon);
    control
        .hook(
            "api",
            &api_message(id, id, &format!("{id}@example.com"), "hi"),
        )
        .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created")
        .into_iter()
        .find(|e| e["data"]["message"]["external_id"] == id)
        .unwrap();
    let ticket = created["subject"].clone();
    of_type(&events, "deskgate.ticket.assigned")
        .into_iter()
        .find(|e| e["subject"] == ticket)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn configured_users_take_tickets_from_the_start_and_only_eligible_ones() {
    let dir = tempfile::tempdir().unwrap();
    let pool = "[\"bob\", \"carl\", \"alice\"]";
    let daemon = Daemon::start(dir.path(), &config(dir.path(), USERS, pool)).await;
    let control = Control::new(&daemon);
    for id in ["m1", "m2"] {
        let event = assigned(&daemon, id).await;
        assert_eq!(event["data"]["assignee"], "alice", "{event}");
        let trace = event["data"]["trace"].as_str().unwrap();
        assert!(trace.contains("bob is offline"), "{trace}");
        assert!(trace.contains("carl has no seat"), "{trace}");
        let view = control.ticket(event["subject"].as_str().unwrap()).await;
        assert_eq!(view["routing"]["owner"], "alice", "{view}");
    }
    let (status, users) = control.send("GET", "/v1/control/users", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        users["users"]["alice"]["availability"], "available",
        "{users}"
    );
    assert_eq!(users["users"]["bob"]["availability"], "offline");

    // Owners must be users of the directory, and a ticket's owner must hold a seat.
    let events = daemon.all_events().await;
    let ticket = of_type(&events, "deskgate.ticket.created")[0]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let contact = of_type(&events, "deskgate.contact.created")[0]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/control/contacts/{contact}/owner");
    let (status, body) = control
        .send("PUT", &path, Some(json!({"owner": "zoe"})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("owner: unknown user \"zoe\""))
    );
    let (status, body) = control
        .send("PUT", &path, Some(json!({"owner": "bob"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/v1/control/tickets/{ticket}/owner");
    let (status, body) = control
        .send("PUT", &path, Some(json!({"owner": "zoe"})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("owner: unknown user \"zoe\""))
    );
    let (status, body) = control
        .send("PUT", &path, Some(json!({"owner": "carl"})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("owner: user \"carl\" has no seat"))
    );
    let view = control.ticket(&ticket).await;
    assert_eq!(view["routing"]["owner"], "alice");

    // After a reload without alice and with dan's seat taken, erin gets the next ticket and
    // alice can no longer be made an owner.
    let users = "[routing.users.bob]\nname = \"Bob\"\navailability = \"offline\"\n\
                 [routing.users.dan]\nname = \"Dan\"\nseat = false\n\
                 [routing.users.erin]\nname = \"Erin\"\n";
    let text = std::fs::read_to_string(daemon.config_path()).unwrap();
    let head = text.split("[control]").next().unwrap().to_owned();
    let body = config(dir.path(), users, "[\"bob\", \"dan\", \"erin\"]");
    std::fs::write(daemon.config_path(), format!("{head}{body}")).unwrap();
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    eventually("the reload", Duration::from_secs(10), || async {
        let log = daemon.log();
        assert!(!log.contains("not reloaded"), "{log}");
        log.contains("configuration reloaded")
    })
    .await;
    let event = assigned(&daemon, "m3").await;
    assert_eq!(event["data"]["assignee"], "erin", "{event}");
    let trace = event["data"]["trace"].as_str().unwrap();
    assert!(trace.contains("dan has no seat"), "{trace}");
    let (status, body) = control
        .send("PUT", &path, Some(json!({"owner": "alice"})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("owner: unknown user \"alice\""))
    );
}
