//! An agent's reply sent through deskgate fires `agent_emailed` when the provider accepts it:
//! the ticket's status moves in the mirror, one `deskgate.ticket.status_trigger` follows the
//! `deskgate.outbound.sent`, the reached status's actions run, and neither automatic mail nor a
//! restart after kill -9 fires it again. Chat replies fire it only where `include_chat` says.

use std::time::Duration;

use serde_json::json;

use super::{control, mailbox, of_type, wait_events, Control, PIPELINE};
use crate::outbound_support::header;
use test_kit::smtpd::Smtpd;
use test_kit::{api_message, free_port, Daemon};

fn agent_triggers(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    of_type(events, "deskgate.ticket.status_trigger")
        .into_iter()
        .filter(|e| e["data"]["trigger"] == "agent_emailed")
        .collect()
}

#[tokio::test]
async fn an_agent_reply_the_provider_accepted_moves_the_ticket_once() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), free_port());
    let config = format!(
        "{}{}[channels.api.tickets]\npipeline = \"support\"\n{PIPELINE}",
        control(dir.path()),
        mailbox(smtpd.port, "[\"api\"]", false)
    );
    let mut daemon = Daemon::start(dir.path(), &config).await;
    let control = Control::new(&daemon);
    control
        .hook("api", &api_message("m1", "t1", "ana@example.com", "help"))
        .await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    let created = of_type(&events, "deskgate.ticket.created")[0];
    let ticket = created["subject"].as_str().unwrap().to_owned();
    let conversation = created["data"]["conversation"]["id"].as_str().unwrap();
    assert_eq!(created["data"]["ticket"]["status"], "new");

    // Automatic mail is not an agent's reply: it moves nothing.
    let (status, body) = control
        .send(
            "POST",
            "/v1/control/outbound/automatic",
            Some(
                json!({"kind": "acknowledgement", "template": "ticket_received",
                        "conversation_id": conversation}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    wait_events(&daemon, "deskgate.outbound.sent", 1).await;

    let path = format!("/v1/control/conversations/{conversation}/replies");
    let reply = json!({"agent": {"id": "alice", "name": "Alice"}, "text": "On it."});
    let (status, body) = control.send("POST", &path, Some(reply)).await;
    assert_eq!(status, 202, "{body}");
    let events = wait_events(&daemon, "deskgate.ticket.status_trigger", 1).await;
    let sent = of_type(&events, "deskgate.outbound.sent");
    let reply_sent = sent
        .iter()
        .find(|e| e["data"]["purpose"] == "agent_reply")
        .expect("the reply was sent");
    let triggers = agent_triggers(&events);
    assert_eq!(triggers.len(), 1, "{events:#?}");
    let trigger = triggers[0];
    assert_eq!(trigger["subject"], ticket.as_str());
    assert_eq!(trigger["data"]["old_status"], "new");
    assert_eq!(trigger["data"]["new_status"], "waiting_on_contact");
    let seq = |e: &serde_json::Value| e["sequence"].as_str().unwrap().to_owned();
    assert!(
        seq(trigger) > seq(reply_sent),
        "the trigger follows the send"
    );
    let view = control.ticket(&ticket).await;
    assert_eq!(view["routing"]["status"], "waiting_on_contact", "{view}");

    // The status reached runs its actions: Alice is notified, by mail.
    let requested = of_type(&events, "deskgate.ticket.action_requested");
    assert_eq!(requested.len(), 1, "{requested:?}");
    let mails = smtpd.wait_for(3, Duration::from_secs(30)).await;
    assert!(
        mails
            .iter()
            .any(|m| header(m, "To").as_deref() == Some("alice@desk.example")),
        "the notification arrived"
    );

    // A crash and restart replays nothing twice (once every send is recorded: a send the
    // crash cuts short is sent again by design).
    wait_events(&daemon, "deskgate.outbound.sent", 3).await;
    daemon.kill();
    daemon.restart().await;
    daemon.settled().await;
    let events = daemon.all_events().await;
    assert_eq!(agent_triggers(&events).len(), 1);
    let control = Control::new(&daemon);
    let view = control.ticket(&ticket).await;
    assert_eq!(view["routing"]["status"], "waiting_on_contact");
    assert_eq!(smtpd.messages().len(), 3, "nothing was sent again");
}

#[tokio::test]
async fn a_chat_reply_moves_the_ticket_only_where_include_chat_says() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[outbound]\nchat_channels = [\"chat\", \"widget\"]\n\n\
         [channels.chat]\nkind = \"chat\"\n[channels.chat.tickets]\npipeline = \"support\"\n\
         [channels.widget]\nkind = \"chat\"\n[channels.widget.tickets]\npipeline = \"chats\"\n\
         {PIPELINE}\n[routing.pipelines.chats]\nlabel = \"Chats\"\nstatuses = [\n\
         {{ id = \"open\", label = \"Open\", open = true }},\n\
         {{ id = \"answered\", label = \"Answered\", open = true }},\n\
         {{ id = \"closed\", label = \"Closed\", open = false }},\n]\n\
         [routing.pipelines.chats.triggers]\ninclude_chat = true\n\
         customer_replied = {{ enabled = true, target = \"open\" }}\n\
         agent_emailed = {{ enabled = true, target = \"answered\" }}\n",
        control(dir.path()),
    );
    let daemon = Daemon::start(dir.path(), &config).await;
    let control = Control::new(&daemon);
    for channel in ["chat", "widget"] {
        let message = json!({"visitor_token": format!("v-{channel}"), "message_id": "1",
                             "text": "hello", "email": "cy@example.com"});
        control.hook(channel, &message).await;
    }
    daemon.settled().await;
    let events = daemon.all_events().await;
    for created in of_type(&events, "deskgate.ticket.created") {
        let conversation = created["data"]["conversation"]["id"].as_str().unwrap();
        let path = format!("/v1/control/conversations/{conversation}/replies");
        let reply = json!({"agent": {"id": "alice"}, "text": "Hi!"});
        let (status, body) = control.send("POST", &path, Some(reply)).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "handed_over");
    }
    daemon.settled().await;
    let events = daemon.all_events().await;
    let triggers = agent_triggers(&events);
    assert_eq!(
        triggers.len(),
        1,
        "only the include_chat pipeline: {triggers:?}"
    );
    assert_eq!(triggers[0]["data"]["new_status"], "answered");
    for created in of_type(&events, "deskgate.ticket.created") {
        let ticket = created["subject"].as_str().unwrap();
        let view = control.ticket(ticket).await;
        let expected = match created["data"]["conversation"]["channel"].as_str().unwrap() {
            "widget" => "answered",
            _ => "new",
        };
        assert_eq!(view["routing"]["status"], expected, "{view}");
    }
}

/// The processor itself: an agent's reply, its attempt and its acceptance fire `agent_emailed`
/// once; a second acceptance (a resend after a crash) fires nothing; the same journal replayed
/// on a fresh state gives byte-identical events.
#[test]
fn agent_emailed_fires_once_and_a_replay_fires_it_identically() {
    use crate::routing_support::{created_conversation, mail, processor, Harness, CONFIG};
    use deskgate::model::{
        AgentRef, OutboundOutcome, OutboundRecord, Record, ReplyRequest, SendResult,
    };
    use deskgate::store::keys;

    let extra = "[outbound.mailboxes.support]\naddress = \"support@acme.test\"\n\
                 company_name = \"Acme\"\nchannels = [\"mail\"]\n\
                 [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = 2525\n\
                 tls = \"plain\"\n";
    let config = deskgate::config::Config::parse(&format!("{CONFIG}\n{extra}")).unwrap();
    let planner = std::sync::Arc::new(deskgate::outbound::Planner::new(&config.outbound).unwrap());
    let mut h = Harness::new(extra);
    h.processor = processor(&h.store, &h.rules).with_outbound(planner.clone());
    let conversation = created_conversation(&h.mail(mail("m1@x", "m1@x", "ana@example.com")));
    let at = h.t0 + chrono::Duration::minutes(5);
    h.apply(Record::Outbound(Box::new(OutboundRecord::Reply(
        ReplyRequest {
            idempotency_key: "r1".into(),
            conversation_id: conversation,
            agent: AgentRef {
                id: "alice".into(),
                name: Some("Alice".into()),
                first_name: None,
                last_name: None,
            },
            text: "On it.".into(),
            html: None,
            attachments: Vec::new(),
            requested_at: at,
        },
    ))));
    let requested: deskgate::outbound::RequestOutcome = h
        .store
        .state_get(&keys::outbound_request(h.seq))
        .unwrap()
        .unwrap();
    let item = requested.item_id.expect("queued");
    let outcome = |result: SendResult| {
        Record::Outbound(Box::new(OutboundRecord::Outcome(OutboundOutcome {
            item_id: item.clone(),
            attempt: 1,
            result,
            at,
        })))
    };
    h.apply(outcome(SendResult::Attempting));
    let sent = SendResult::Sent {
        provider_id: "250 queued".into(),
    };
    let events = h.apply(outcome(sent.clone()));
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types[..2],
        ["deskgate.outbound.sent", "deskgate.ticket.status_trigger"],
        "{events:#?}"
    );
    assert_eq!(events[1]["data"]["trigger"], "agent_emailed");
    assert!(
        h.apply(outcome(sent)).is_empty(),
        "a late acceptance fires nothing"
    );

    let original = h.store.outbox_read(0, u64::MAX, 10_000).unwrap();
    let (_dir, store, count) = h.journal_on_fresh_store();
    let replay = processor(&store, &h.rules).with_outbound(planner);
    replay.step(0, count).unwrap();
    assert_eq!(store.outbox_read(0, u64::MAX, 10_000).unwrap(), original);
}
