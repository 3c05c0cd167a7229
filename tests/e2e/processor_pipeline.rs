//! The processor's steps as the daemon runs them: while records wait, one step is committed on
//! a thread of its own while the next is applied on top of it (`src/processor/pipeline.rs`).

use crate::routing_support::*;
use deskgate::model::{ControlCommand, Position};

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

#[test]
fn steps_applied_behind_a_step_in_flight_make_the_events_of_one_record_at_a_time() {
    let mut h = Harness::new("");
    // Customers writing in turn on threads of their own, tickets answered and closed between:
    // each step of three records finds the contacts, conversations and tickets of the step
    // before it.
    let mut tickets = Vec::new();
    for round in 0..6 {
        for customer in 0..8 {
            let root = leak(format!("c{customer}@x"));
            let id = match round {
                0 => root,
                _ => leak(format!("c{customer}r{round}@x")),
            };
            let from = leak(format!("customer{customer}@example.com"));
            let events = h.mail(mail(id, root, from));
            if round == 0 {
                tickets.push(created_ticket(&events));
            }
        }
        let ticket = tickets[round].clone();
        h.control(ControlCommand::AgentEmailed {
            ticket: ticket.clone(),
            conversation: None,
        });
        if round % 2 == 1 {
            h.control(ControlCommand::SetTicketStatus {
                ticket,
                status: "closed".into(),
            });
        }
    }
    let original = h.store.outbox_read(0, u64::MAX, 100_000).unwrap();
    assert!(original.len() > 100, "{}", original.len());

    // The same journal, applied by the processor's thread as the daemon starts it after a
    // crash: everything journaled, nothing applied.
    let (_dir, store, count) = h.journal_on_fresh_store();
    let processor = processor_in_steps_of(&store, &h.rules, 3);
    let (durable, durable_rx) = tokio::sync::watch::channel(count);
    let (visible, visible_rx) = tokio::sync::watch::channel(Position {
        cursor: 0,
        outbox: 0,
    });
    let thread = deskgate::processor::start(processor, durable_rx, visible);
    // The journal writer has stopped: the processor ends once it has applied everything.
    drop(durable);
    thread.join().unwrap();
    assert_eq!(visible_rx.borrow().cursor, count);
    assert_eq!(store.outbox_read(0, u64::MAX, 100_000).unwrap(), original);
}
