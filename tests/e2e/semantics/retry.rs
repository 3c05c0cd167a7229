//! A quarantined webhook, form, chat or API input can be retried after a fix, as a mail can:
//! here an API message the processor could not apply (its contact's record in the state was
//! damaged) is set aside, the state is repaired, and `POST /v1/control/quarantine/{seq}/retry`
//! applies it in its place, once.

use serde_json::Value;

use super::{control, of_type, Control};
use deskgate::store::{keys, Store};
use test_kit::{api_message, Daemon};

async fn hook(daemon: &Daemon, id: &str) {
    let control = Control::new(daemon);
    control
        .hook("api", &api_message(id, id, "ana@example.com", "hi"))
        .await;
}

/// Replaces one state value while the daemon is stopped; returns the value it had.
fn put_state(dir: &std::path::Path, key: &[u8], value: Vec<u8>) -> Vec<u8> {
    let store = Store::open(&dir.join("state")).unwrap();
    let mut batch = store.state_batch();
    let old = batch.get_raw(key).unwrap().expect("the value exists");
    batch.put_raw(key.to_vec(), value);
    batch.commit().unwrap();
    store.flush().unwrap();
    old
}

#[tokio::test]
async fn a_quarantined_api_input_is_applied_by_a_retry_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &control(dir.path())).await;
    hook(&daemon, "m1").await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let contact = of_type(&events, "deskgate.contact.created")[0]["subject"]
        .as_str()
        .unwrap()
        .to_owned();

    // A damaged contact record: Ana's next message cannot be applied.
    assert!(daemon.terminate().success());
    let good = put_state(
        dir.path(),
        &keys::contact(&contact),
        b"\x01{damaged".to_vec(),
    );
    daemon.restart().await;
    hook(&daemon, "m2").await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let quarantined = of_type(&events, "deskgate.inbound.quarantined");
    assert_eq!(quarantined.len(), 1, "{events:#?}");
    assert_eq!(quarantined[0]["data"]["external_id"], "m2");
    let seq = quarantined[0]["data"]["journal_seq"].as_u64().unwrap();
    let control = Control::new(&daemon);
    let path = format!("/v1/control/quarantine/{seq}/retry");
    let (status, body) = control.send("POST", &path, None).await;
    assert_eq!(status, 422, "still broken: {body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("still cannot be applied"));

    // Repaired, the retry applies it in its place; a second retry changes nothing.
    assert!(daemon.terminate().success());
    put_state(dir.path(), &keys::contact(&contact), good);
    daemon.restart().await;
    let control = Control::new(&daemon);
    let path = format!("/v1/control/quarantine/{seq}/retry");
    let (status, body) = control.send("POST", &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["external_id"], "m2");
    assert_eq!(body["entry"]["retried_as"], seq);
    let (status, again) = control.send("POST", &path, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    let events = daemon.all_events().await;
    let created: Vec<&Value> = of_type(&events, "deskgate.ticket.created")
        .into_iter()
        .filter(|e| e["data"]["message"]["external_id"] == "m2")
        .collect();
    assert_eq!(created.len(), 1, "applied once");
    assert_eq!(created[0]["data"]["message"]["journal_seq"], seq);
    assert_eq!(created[0]["data"]["ticket"]["contact_id"], contact.as_str());
}
