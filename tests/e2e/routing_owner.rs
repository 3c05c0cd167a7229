//! `contact_owner` routing through the real processor: the owner is read from the contact record
//! (the contacts work sets `owner` through its API; here the test writes it the same way), with
//! availability and seats changed through journaled control commands.

use crate::routing_support::*;
use deskgate::model::{Availability, ControlCommand};
use deskgate::store::keys;
use serde_json::Value;

const CONFIG: &str = r#"
[channels.mail]
kind = "api"
[channels.mail.tickets.routing]
rule = "contact_owner"
teams = ["support"]

[routing.teams.support]
label = "Support"
# Everyone starts offline here, so that the test sets each availability itself.
[routing.users.alice]
name = "Alice"
availability = "offline"
[routing.users.bob]
name = "Bob"
teams = ["support"]
availability = "offline"
[routing.users.carol]
name = "Carol"
teams = ["support"]
availability = "offline"
"#;

fn set_owner(h: &Harness, contact: &str, owner: &str) {
    let key = keys::contact(contact);
    let mut value: Value = h
        .store
        .state_get(&key)
        .unwrap()
        .expect("the contact exists");
    value["owner"] = Value::from(owner);
    let mut batch = h.store.state_batch();
    batch.put(key, &value);
    batch.commit().unwrap();
}

fn available(h: &mut Harness, user: &str, availability: Availability) {
    let (outcome, _) = h.control(ControlCommand::SetAvailability {
        user: user.into(),
        availability,
    });
    assert_eq!(outcome.status, 200, "{:?}", outcome.body);
}

fn assignment(events: &[Value]) -> (Option<String>, String) {
    let data = &of_type(events, "assigned")[0]["data"];
    (
        data["assignee"].as_str().map(str::to_owned),
        data["trace"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_contact_owner_gets_the_ticket_unless_away_or_seatless() {
    let mut h = Harness::with_config(CONFIG);
    let events = h.mail(mail("t1", "t1", "ana@example.com"));
    let contact = events
        .iter()
        .find(|e| e["type"] == "deskgate.contact.created")
        .and_then(|e| e["subject"].as_str())
        .expect("the first message creates the contact")
        .to_owned();
    assert_eq!(
        assignment(&events),
        (
            None,
            "contact has no owner; fallback team support; bob is offline, carol is offline; \
             nobody eligible; unassigned"
                .to_owned()
        )
    );

    set_owner(&h, &contact, "alice");
    available(&mut h, "alice", Availability::Available);
    let events = h.mail(mail("t2", "t2", "ana@example.com"));
    assert_eq!(
        assignment(&events),
        (Some("alice".into()), "contact owner alice".into())
    );

    available(&mut h, "alice", Availability::Away);
    available(&mut h, "bob", Availability::Available);
    let events = h.mail(mail("t3", "t3", "ana@example.com"));
    assert_eq!(
        assignment(&events),
        (
            Some("bob".into()),
            "owner alice is away; fallback team support; round robin picked bob".into()
        )
    );

    available(&mut h, "alice", Availability::Available);
    let (outcome, _) = h.control(ControlCommand::PutUser {
        id: "alice".into(),
        name: "Alice".into(),
        email: None,
        seat: false,
        teams: vec![],
    });
    assert_eq!(outcome.status, 200);
    available(&mut h, "carol", Availability::Available);
    let events = h.mail(mail("t4", "t4", "ana@example.com"));
    assert_eq!(
        assignment(&events),
        (
            Some("carol".into()),
            "owner alice has no seat; fallback team support; round robin picked carol".into()
        )
    );
}
