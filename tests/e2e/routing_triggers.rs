//! Status triggers and ticket-state commands through the real processor and state store:
//! email threads as `Inbound` values with the flags the email parser sets (forwarded,
//! automatic, bounce), control commands as journaled records, and the events that come out.

use crate::routing_support::*;
use chrono::Duration;
use deskgate::conversations::Conversation;
use deskgate::model::{ControlCommand, Ticket};
use deskgate::store::keys;
use deskgate::store::Store;

#[test]
fn a_customer_reply_on_the_ticket_thread_fires_customer_replied() {
    let mut h = Harness::new("");
    let events = h.mail(mail("m1@x", "m1@x", "ana@example.com"));
    assert_eq!(
        types(&events),
        [
            "deskgate.contact.created",
            "deskgate.ticket.created",
            "deskgate.ticket.assigned",
            "deskgate.ticket.action_requested",
            // The harness configures no mailbox: the promise ends with its reason.
            "deskgate.outbound.suppressed",
        ]
    );
    let created = &events[1]["data"]["ticket"];
    assert_eq!(created["status"], "new");
    assert_eq!(created["pipeline"], "support");
    assert_eq!(created["owner"], "alice");
    assert_eq!(events[2]["data"]["trace"], "round robin picked alice");
    let ack = &events[3]["data"];
    assert_eq!(ack["template"], "ticket_received");
    assert_eq!(ack["recipients"][0]["email"], "ana@example.com");
    let ticket = created_ticket(&events);

    let events = h.mail(mail("m2@x", "m1@x", "ana@example.com"));
    let triggers = of_type(&events, "status_trigger");
    assert_eq!(triggers.len(), 1, "{events:?}");
    let data = &triggers[0]["data"];
    assert_eq!(data["ticket"], ticket.as_str());
    assert_eq!(data["trigger"], "customer_replied");
    assert_eq!(data["old_status"], "new");
    assert_eq!(data["new_status"], "waiting_on_us");
    let notify = of_type(&events, "action_requested");
    assert_eq!(
        notify[0]["data"]["recipients"][0]["email"],
        "alice@desk.example"
    );
}

#[test]
fn agent_emailed_then_customer_reply_moves_the_ticket_back_and_forth() {
    let mut h = Harness::new("");
    let ticket = created_ticket(&h.mail(mail("m1@x", "m1@x", "ana@example.com")));
    let (outcome, events) = h.control(ControlCommand::AgentEmailed {
        ticket: ticket.clone(),
        conversation: None,
    });
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.body["fired"], true);
    let trigger = &of_type(&events, "status_trigger")[0]["data"];
    assert_eq!(
        (
            &trigger["trigger"],
            &trigger["old_status"],
            &trigger["new_status"]
        ),
        (
            &"agent_emailed".into(),
            &"new".into(),
            &"waiting_on_contact".into()
        )
    );
    let events = h.mail(mail("m2@x", "m1@x", "ana@example.com"));
    let trigger = &of_type(&events, "status_trigger")[0]["data"];
    assert_eq!(trigger["old_status"], "waiting_on_contact");
    assert_eq!(trigger["new_status"], "waiting_on_us");
}

#[test]
fn forwards_replies_to_forwards_out_of_office_and_bounces_never_fire() {
    let mut h = Harness::new("");
    created_ticket(&h.mail(mail("m1@x", "m1@x", "ana@example.com")));
    // Forwarded mail on the ticket's thread.
    let mut forward = mail("fw1@x", "m1@x", "ana@example.com");
    forward.forwarded = true;
    assert!(of_type(&h.mail(forward), "status_trigger").is_empty());
    // An out-of-office reply.
    let mut ooo = mail("ooo@x", "m1@x", "ana@example.com");
    ooo.automatic = true;
    assert!(of_type(&h.mail(ooo), "status_trigger").is_empty());
    // A bounce.
    let mut bounce = mail("dsn@x", "m1@x", "mailer-daemon@example.com");
    bounce.bounce = true;
    assert!(of_type(&h.mail(bounce), "status_trigger").is_empty());

    // A conversation that started from a forward: the customer's replies to it never fire.
    let mut forwarded = mail("fw2@x", "fw2@x", "colleague@example.com");
    forwarded.forwarded = true;
    let events = h.mail(forwarded);
    assert_eq!(of_type(&events, "created").len(), 1);
    let reply = h.mail(mail("r-fw2@x", "fw2@x", "colleague@example.com"));
    assert_eq!(types(&reply)[0], "deskgate.ticket.message_added");
    assert!(of_type(&reply, "status_trigger").is_empty(), "{reply:?}");

    // And an ordinary reply on the first thread still does.
    let events = h.mail(mail("m2@x", "m1@x", "ana@example.com"));
    assert_eq!(of_type(&events, "status_trigger").len(), 1);
}

/// Puts a new thread on an existing ticket, as email threading does when a customer starts a
/// new thread that belongs to the ticket.
fn attach_thread(h: &Harness, ticket_id: &str, root: &str) {
    let mut batch = h.store.state_batch();
    let mut ticket: Ticket = batch.get(&keys::ticket(ticket_id)).unwrap().unwrap();
    let conversation = Conversation {
        id: format!("conv-{root}"),
        channel: "mail".into(),
        thread_key: root.into(),
        contact_id: ticket.contact_id.clone(),
        ticket_id: ticket_id.into(),
        created_at: h.t0,
        last_message_at: h.t0,
        messages: 0,
        reply_window_ends_at: None,
        human_agent_window_ends_at: None,
        split_from: None,
    };
    ticket.conversations.push(conversation.id.clone());
    batch.put(keys::thread("mail", root), &conversation.id);
    // Email threads by Message-ID: the root must be indexed as a message of this conversation.
    batch.put(keys::email_message("mail", root), &conversation.id);
    batch.put(keys::conversation(&conversation.id), &conversation);
    batch.put(keys::ticket(ticket_id), &ticket);
    batch.commit().unwrap();
}

#[test]
fn close_then_reopen_then_a_new_thread_counts() {
    let mut h = Harness::new("");
    let ticket = created_ticket(&h.mail(mail("m1@x", "m1@x", "ana@example.com")));
    // Before any close, a new thread on the ticket does not fire the trigger.
    attach_thread(&h, &ticket, "early@x");
    let events = h.mail(mail("early-reply@x", "early@x", "ana@example.com"));
    assert_eq!(of_type(&events, "message_added").len(), 1, "{events:?}");
    assert!(of_type(&events, "status_trigger").is_empty(), "{events:?}");

    let (outcome, events) = h.control(ControlCommand::SetTicketStatus {
        ticket: ticket.clone(),
        status: "closed".into(),
    });
    assert_eq!(outcome.status, 200, "{:?}", outcome.body);
    assert_eq!(of_type(&events, "status_changed").len(), 1);
    assert_eq!(
        of_type(&events, "closed").len(),
        2,
        "both conversations close: {events:?}"
    );

    // The customer writes on the closed ticket's thread: it reopens with customer_replied.
    let events = h.mail(mail("m2@x", "m1@x", "ana@example.com"));
    let trigger = &of_type(&events, "status_trigger")[0]["data"];
    assert_eq!(trigger["old_status"], "closed");
    assert_eq!(trigger["new_status"], "waiting_on_us");
    h.control(ControlCommand::AgentEmailed {
        ticket: ticket.clone(),
        conversation: None,
    });
    // After the reopen, a new thread on the ticket counts.
    attach_thread(&h, &ticket, "late@x");
    let events = h.mail(mail("late-reply@x", "late@x", "ana@example.com"));
    let trigger = &of_type(&events, "status_trigger")[0]["data"];
    assert_eq!(trigger["old_status"], "waiting_on_contact");
    assert_eq!(trigger["new_status"], "waiting_on_us");
}

#[test]
fn a_reply_on_a_closed_ticket_opens_a_new_one_when_the_pipeline_says_so() {
    let text = CONFIG.replace(
        "label = \"Support\"",
        "label = \"Support\"\nclosed_reply = \"new_ticket\"",
    );
    let mut h = Harness::with_config(&text);
    let first = created_ticket(&h.mail(mail("m1@x", "m1@x", "ana@example.com")));
    h.control(ControlCommand::SetTicketStatus {
        ticket: first.clone(),
        status: "closed".into(),
    });
    let events = h.mail(mail("m2@x", "m1@x", "ana@example.com"));
    let second = created_ticket(&events);
    assert_ne!(first, second);
    assert_eq!(events[0]["data"]["ticket"]["status"], "new");
    assert!(h.ticket(&first).unwrap().conversations.is_empty());
    assert_eq!(h.ticket(&second).unwrap().conversations.len(), 1);
    // The thread now belongs to the new ticket.
    let events = h.mail(mail("m3@x", "m1@x", "ana@example.com"));
    assert_eq!(events[0]["subject"], second.as_str());
}

#[test]
fn merged_threads_reply_to_the_survivor_and_split_threads_go_with_the_new_ticket() {
    let mut h = Harness::new("");
    let a = created_ticket(&h.mail(mail("a1@x", "a1@x", "ana@example.com")));
    let b = created_ticket(&h.mail(mail("b1@x", "b1@x", "ana@example.com")));
    let (outcome, events) = h.control(ControlCommand::MergeTickets {
        survivor: a.clone(),
        merged: b.clone(),
    });
    assert_eq!(outcome.status, 200);
    assert_eq!(types(&events), ["deskgate.ticket.merged"]);
    assert!(h.ticket(&b).is_none());
    let events = h.mail(mail("b2@x", "b1@x", "ana@example.com"));
    assert_eq!(
        events[0]["subject"],
        a.as_str(),
        "a reply on b's thread lands on a"
    );
    // The merged thread was b's own: the reply fires the trigger on a.
    assert_eq!(of_type(&events, "status_trigger").len(), 1);

    let conversation = events[0]["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (outcome, events) = h.control(ControlCommand::SplitConversation {
        conversation: conversation.clone(),
        messages: None,
    });
    assert_eq!(outcome.status, 200, "{:?}", outcome.body);
    let new = outcome.body["new_ticket"].as_str().unwrap().to_owned();
    assert_eq!(types(&events), ["deskgate.ticket.split"]);
    let events = h.mail(mail("b3@x", "b1@x", "ana@example.com"));
    assert_eq!(
        events[0]["subject"],
        new.as_str(),
        "the thread went with the split"
    );

    // Splitting the last conversation off a ticket is refused, and leaves nothing behind.
    let (outcome, events) = h.control(ControlCommand::SplitConversation {
        conversation,
        messages: None,
    });
    assert_eq!(outcome.status, 409);
    assert!(events.is_empty());
}

/// A mail `id` replying to `parents` (oldest first, the last as In-Reply-To).
fn reply(h: &mut Harness, id: &'static str, parents: &[&str]) -> Vec<serde_json::Value> {
    let at = h.t0 + chrono::Duration::minutes(h.seq as i64);
    let mut inbound = mail(id, id, "ana@example.com").build(at);
    let email = inbound.email.as_mut().unwrap();
    email.in_reply_to = parents.last().map(|p| p.to_string()).into_iter().collect();
    email.references = parents.iter().map(|p| p.to_string()).collect();
    h.apply(deskgate::model::Record::Inbound(Box::new(inbound)))
}

#[test]
fn a_split_by_message_moves_the_thread_index_and_replays_the_same() {
    let mut h = Harness::new("");
    let a = reply(&mut h, "a@x", &[]);
    let b = reply(&mut h, "b@x", &["a@x"]);
    reply(&mut h, "c@x", &["a@x", "b@x"]);
    reply(&mut h, "d@x", &["a@x"]);
    let old = created_ticket(&a);
    let (outcome, events) = h.control(ControlCommand::SplitConversation {
        conversation: created_conversation(&a),
        messages: Some(vec![b[0]["data"]["message"]["id"].as_str().unwrap().into()]),
    });
    assert_eq!(outcome.status, 200, "{:?}", outcome.body);
    assert_eq!(types(&events), ["deskgate.ticket.split"]);
    let new = outcome.body["new_ticket"].as_str().unwrap().to_owned();
    assert_eq!(
        reply(&mut h, "e@x", &["a@x", "b@x", "c@x"])[0]["subject"],
        new.as_str()
    );
    assert_eq!(
        reply(&mut h, "f@x", &["a@x", "d@x"])[0]["subject"],
        old.as_str()
    );
    assert_eq!(h.ticket(&new).unwrap().conversations.len(), 1);

    let original = h.store.outbox_read(0, u64::MAX, 10_000).unwrap();
    let (_dir, store, count) = h.journal_on_fresh_store();
    let replay = processor(&store, &h.rules);
    replay.step(0, count).unwrap();
    assert_eq!(store.outbox_read(0, u64::MAX, 10_000).unwrap(), original);
}

#[test]
fn deleting_a_conversation_deletes_its_ticket_and_a_new_message_starts_over() {
    let mut h = Harness::new("");
    let events = h.mail(mail("m1@x", "m1@x", "ana@example.com"));
    let ticket = created_ticket(&events);
    let conversation = created_conversation(&events);
    let (outcome, events) = h.control(ControlCommand::DeleteConversation { conversation });
    assert_eq!(outcome.status, 200);
    assert_eq!(types(&events), ["deskgate.ticket.deleted"]);
    assert!(h.ticket(&ticket).is_none());
    let events = h.mail(mail("m2@x", "m1@x", "ana@example.com"));
    assert_ne!(created_ticket(&events), ticket);
    let (outcome, _) = h.control(ControlCommand::DeleteTicket { ticket });
    assert_eq!(outcome.status, 404);
}

#[test]
fn spam_flags_the_sender_and_is_purged_after_the_retention() {
    let mut h = Harness::new("");
    let events = h.mail(mail("s1@x", "s1@x", "spammer@example.com"));
    let ticket = created_ticket(&events);
    let conversation = created_conversation(&events);
    let (outcome, events) = h.control(ControlCommand::MarkSpam {
        conversation: conversation.clone(),
    });
    assert_eq!(outcome.status, 200);
    // Its only conversation is spam: the ticket goes at once (purging the rest follows).
    assert_eq!(
        types(&events),
        ["deskgate.conversation.spam", "deskgate.ticket.deleted"]
    );
    assert!(h.ticket(&ticket).is_none());
    let events = h.mail(mail("s2@x", "s2@x", "spammer@example.com"));
    assert_eq!(events[0]["data"]["message"]["spam"], true);
    assert!(
        of_type(&events, "assigned").is_empty(),
        "spam is never assigned"
    );

    // 91 days later, any record applied purges the spam conversation.
    let later = h.t0 + Duration::days(91);
    h.control_at(
        ControlCommand::PutTeam {
            id: "support".into(),
            label: "Support".into(),
        },
        later,
    );
    assert!(h.ticket(&ticket).is_none());
    let conversation: Option<Conversation> = h
        .store
        .state_get(&keys::conversation(&conversation))
        .unwrap();
    assert!(conversation.is_none());
}

#[test]
fn a_ticketless_channel_sends_conversation_events_only() {
    let mut h = Harness::new("");
    let mut note = mail("n1@x", "n1@x", "ana@example.com");
    note.channel = "notes";
    let events = h.mail(note);
    assert_eq!(
        types(&events),
        [
            "deskgate.contact.created",
            "deskgate.conversation.message_added"
        ]
    );
    assert!(events[1]["data"].get("ticket").is_none());
    assert!(events[1]["data"]["conversation"]["id"].is_string());
}

#[test]
fn refused_commands_answer_with_the_reason() {
    let mut h = Harness::new("");
    let ticket = created_ticket(&h.mail(mail("m1@x", "m1@x", "ana@example.com")));
    let (outcome, events) = h.control(ControlCommand::SetTicketStatus {
        ticket: ticket.clone(),
        status: "solved".into(),
    });
    assert_eq!(outcome.status, 422);
    assert_eq!(
        outcome.body["error"],
        "status: \"solved\" is not a status of pipeline \"support\""
    );
    assert!(events.is_empty());
    let (outcome, _) = h.control(ControlCommand::SetTicketOwner {
        ticket,
        owner: Some("zoe".into()),
    });
    assert_eq!(outcome.status, 422);
    assert_eq!(outcome.body["error"], "owner: unknown user \"zoe\"");
}

#[test]
fn chat_conversations_fire_no_triggers_or_actions_unless_included() {
    // The channel kinds for chat and Messenger come with their own work; mark the test
    // channel as one the way the compiled rules do for those kinds.
    let mut chat_rules = rules(CONFIG);
    chat_rules.channels.get_mut("mail").unwrap().chat = true;
    let mut h = Harness::with_rules(chat_rules.clone());
    let events = h.mail(mail("c1@x", "c1@x", "ana@example.com"));
    assert!(
        of_type(&events, "action_requested").is_empty(),
        "{events:?}"
    );
    let events = h.mail(mail("c2@x", "c1@x", "ana@example.com"));
    assert!(of_type(&events, "status_trigger").is_empty(), "{events:?}");

    let pipeline = chat_rules.pipelines.get_mut("support").unwrap();
    pipeline.triggers.include_chat = true;
    pipeline.actions[0].include_chat = true;
    let mut h = Harness::with_rules(chat_rules);
    let events = h.mail(mail("c1@x", "c1@x", "ana@example.com"));
    assert_eq!(of_type(&events, "action_requested").len(), 1);
    let events = h.mail(mail("c2@x", "c1@x", "ana@example.com"));
    assert_eq!(of_type(&events, "status_trigger").len(), 1);
}

#[test]
fn a_replay_of_the_journal_makes_the_same_decisions_and_events() {
    let mut h = Harness::new("");
    let a = created_ticket(&h.mail(mail("a1@x", "a1@x", "ana@example.com")));
    h.control(ControlCommand::SetAvailability {
        user: "alice".into(),
        availability: deskgate::model::Availability::Away,
    });
    h.mail(mail("b1@x", "b1@x", "bo@example.com"));
    h.control(ControlCommand::AgentEmailed {
        ticket: a.clone(),
        conversation: None,
    });
    h.control(ControlCommand::SetTicketStatus {
        ticket: a,
        status: "closed".into(),
    });
    h.mail(mail("a2@x", "a1@x", "ana@example.com"));
    let original = h.store.outbox_read(0, u64::MAX, 10_000).unwrap();
    assert!(original.len() > 10);

    // The same journal applied to a fresh state, in one step, produces identical events.
    let (_dir, store, count) = h.journal_on_fresh_store();
    let replay = processor(&store, &h.rules);
    let position = replay.step(0, count).unwrap();
    assert_eq!(position.cursor, count);
    let replayed = store.outbox_read(0, u64::MAX, 10_000).unwrap();
    assert_eq!(replayed, original);
}

#[test]
fn agent_emailed_checks_the_conversation_belongs_to_the_ticket() {
    let mut h = Harness::new("");
    let ticket = created_ticket(&h.mail(mail("m1@x", "m1@x", "ana@example.com")));
    let (outcome, events) = h.control(ControlCommand::AgentEmailed {
        ticket,
        conversation: Some("elsewhere".into()),
    });
    assert_eq!(outcome.status, 422);
    assert!(events.is_empty());
}

#[test]
fn real_mail_threads_fire_customer_replied_only_for_the_customers_replies() {
    const ROOT: &str = "4e6e35f5a38b4_479f13bb90078178@small-app-01.mail";
    let mut h = Harness::new("");
    let events = h.corpus_mail("in_reply_to.eml", ROOT);
    let ticket = created_ticket(&events);
    h.control(ControlCommand::AgentEmailed {
        ticket: ticket.clone(),
        conversation: None,
    });
    for name in [
        "auto_reply.eml",
        "auto_reply_with_auto_submitted.eml",
        "bounced_gmail.eml",
    ] {
        let events = h.corpus_mail(name, ROOT);
        let added = of_type(&events, "message_added");
        assert_eq!(
            added[0]["subject"],
            ticket.as_str(),
            "{name} is on the thread"
        );
        assert!(
            of_type(&events, "status_trigger").is_empty(),
            "{name} must not fire customer_replied: {events:?}"
        );
    }
    let events = h.corpus_mail("reply.eml", ROOT);
    let trigger = &of_type(&events, "status_trigger")[0]["data"];
    assert_eq!(trigger["trigger"], "customer_replied");
    assert_eq!(trigger["old_status"], "waiting_on_contact");
    assert_eq!(trigger["new_status"], "waiting_on_us");
}

/// Every key under the prefixes that hold a ticket's or conversation's state, with its value,
/// that names one of `ids`.
fn state_naming(store: &Store, ids: &[&str]) -> Vec<String> {
    const PREFIXES: [&str; 13] = [
        "thread/",
        "email-msgid/",
        "conv_mid/",
        "conversation/",
        "ticket/",
        "contact_conv/",
        "conv_msg/",
        "conv_out/",
        "reply_context/",
        "routing/",
        "agent_emailed/",
        "outgoing/",
        "meta/counter/mail/",
    ];
    let mut found = Vec::new();
    for prefix in PREFIXES {
        for (key, value) in store
            .state_scan::<serde_json::Value>(prefix.as_bytes(), None, usize::MAX)
            .unwrap()
        {
            let entry = format!("{} = {value}", String::from_utf8_lossy(&key));
            if ids.iter().any(|id| entry.contains(id)) {
                found.push(entry);
            }
        }
    }
    found
}

#[test]
fn a_closed_ticket_is_forgotten_after_the_retention_and_its_thread_starts_over() {
    let mut h =
        Harness::new("[routing]\nclosed_retention_secs = 3600\n[journal]\nretention_secs = 3600\n");
    let events = h.mail(mail("m1@x", "m1@x", "ana@example.com"));
    let ticket = created_ticket(&events);
    let conversation = created_conversation(&events);
    h.mail(mail("m2@x", "m1@x", "ana@example.com"));
    h.control(ControlCommand::AgentEmailed {
        ticket: ticket.clone(),
        conversation: None,
    });
    let close = |h: &mut Harness, at| {
        let command = ControlCommand::SetTicketStatus {
            ticket: ticket.clone(),
            status: "closed".into(),
        };
        let (outcome, _) = h.control_at(command, at);
        assert_eq!(outcome.status, 200, "{:?}", outcome.body);
    };
    let t = h.t0 + Duration::days(1);
    close(&mut h, t);
    // Within the retention a reply reopens it, and the clock starts again at the next close.
    let reply = mail("m3@x", "m1@x", "ana@example.com").build(t + Duration::minutes(30));
    let events = h.apply(deskgate::model::Record::Inbound(Box::new(reply)));
    assert_eq!(events[0]["subject"], ticket.as_str());
    close(&mut h, t + Duration::minutes(40));
    let ids = [ticket.as_str(), conversation.as_str()];
    let before = state_naming(&h.store, &ids);
    for prefix in [
        "thread/",
        "email-msgid/",
        "conv_mid/",
        "conv_msg/",
        "routing/closed",
    ] {
        assert!(
            before.iter().any(|entry| entry.starts_with(prefix)),
            "{prefix} holds the ticket before: {before:#?}"
        );
    }

    // 59 minutes after the second close the ticket is still there; at 60 it goes.
    let team = |id: &str| ControlCommand::PutTeam {
        id: id.into(),
        label: "Team".into(),
    };
    h.control_at(team("a"), t + Duration::minutes(99));
    assert!(h.ticket(&ticket).is_some());
    h.control_at(team("b"), t + Duration::minutes(100));
    assert!(h.ticket(&ticket).is_none());
    assert_eq!(state_naming(&h.store, &ids), Vec::<String>::new());

    // A reply on its thread now opens a new ticket.
    let reply = mail("m4@x", "m1@x", "ana@example.com").build(t + Duration::minutes(101));
    let events = h.apply(deskgate::model::Record::Inbound(Box::new(reply)));
    let follow_up = created_ticket(&events);
    assert_ne!(follow_up, ticket);
}

#[test]
fn closed_retention_below_the_journal_retention_is_refused() {
    let text = format!("{CONFIG}\n[routing]\nclosed_retention_secs = 3600\n");
    let problems = deskgate::config::Config::parse(&text).unwrap().validate();
    assert!(
        problems
            .iter()
            .any(|p| p.path == "routing.closed_retention_secs"),
        "{problems:?}"
    );
}
