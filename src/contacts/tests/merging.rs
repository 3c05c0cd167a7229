//! Merges: by a shared identity, by hand, and in any order.

use super::*;

#[test]
fn a_merge_moves_conversations_and_their_tickets() {
    use crate::conversations;
    use crate::model::Inbound;
    let mut harness = Harness::new();
    let (phone_only, _) = harness.resolve(&sender(None, vec![phone("+14155550100")]), at(1));
    let (visitor_only, _) = harness.resolve(&sender(None, vec![visitor("v9")]), at(2));
    let mut batch = harness.store.state_batch();
    let inbound = Inbound::new("chat", "m1", "t1", Sender::default(), "hi", at(2));
    let threaded = conversations::thread(
        &mut batch,
        &harness.minter,
        &inbound,
        &visitor_only.contact.id,
        "#",
    )
    .unwrap();
    index_message(
        &mut batch,
        &visitor_only.contact.id,
        &threaded.conversation.id,
        7,
    )
    .unwrap();
    batch.commit().unwrap();

    let both = sender(None, vec![visitor("v9"), phone("+14155550100")]);
    let (merged, events) = harness.resolve(&both, at(3));
    assert_eq!(events, ["deskgate.contact.merged"]);
    assert_eq!(merged.contact.id, phone_only.contact.id);
    assert_eq!(
        merged.absorbed,
        std::slice::from_ref(&visitor_only.contact.id)
    );
    let conversation: conversations::Conversation = harness
        .store
        .state_get(&keys::conversation(&threaded.conversation.id))
        .unwrap()
        .unwrap();
    assert_eq!(conversation.contact_id, phone_only.contact.id);
    let ticket: crate::model::Ticket = harness
        .store
        .state_get(&keys::ticket(&threaded.ticket.id))
        .unwrap()
        .unwrap();
    assert_eq!(ticket.contact_id, phone_only.contact.id);
    let index = harness
        .store
        .state_scan::<()>(
            &keys::contact_conversations(&phone_only.contact.id),
            None,
            10,
        )
        .unwrap();
    assert_eq!(index.len(), 1);
    let old = harness
        .store
        .state_scan::<()>(
            &keys::contact_conversations(&visitor_only.contact.id),
            None,
            10,
        )
        .unwrap();
    assert!(old.is_empty());
}

/// A ticket keeps its contact when a ticket merge brings it another contact's conversation and
/// a split takes its own away: merging that contact away moves the ticket all the same (by the
/// contact's index of tickets), and the index follows every step.
#[test]
fn a_merge_moves_every_ticket_of_the_absorbed_contact_whatever_its_conversations() {
    use crate::conversations;
    use crate::model::Ticket;
    use crate::model::{ControlCommand, ControlRecord, Inbound};
    let config = crate::config::Config::parse(
        r#"
        [routing.pipelines.support]
        label = "Support"
        statuses = [{ id = "new", label = "New", open = true }]
        "#,
    )
    .unwrap();
    let rules = crate::routing::RuleSet::compile(&config);
    let mut harness = Harness::new();
    let mut tickets = Vec::new();
    let mut conversations = Vec::new();
    for (i, who) in ["a", "b", "c"].into_iter().enumerate() {
        let address = format!("{who}@example.com");
        let (resolved, _) = harness.resolve(&sender(None, vec![email(&address)]), at(i as i64));
        let mut batch = harness.store.state_batch();
        let inbound = Inbound::new("api", who, who, Sender::default(), "hi", at(i as i64));
        let contact = &resolved.contact.id;
        let threaded =
            conversations::thread(&mut batch, &harness.minter, &inbound, contact, "#").unwrap();
        index_message(&mut batch, contact, &threaded.conversation.id, i as u64 + 1).unwrap();
        batch.commit().unwrap();
        tickets.push(threaded.ticket.id);
        conversations.push(threaded.conversation.id);
    }
    let commands = [
        ControlCommand::MergeTickets {
            survivor: tickets[0].clone(),
            merged: tickets[1].clone(),
        },
        ControlCommand::SplitConversation {
            conversation: conversations[0].clone(),
            messages: None,
        },
    ];
    for (seq, command) in (10..).zip(commands) {
        let record = ControlRecord {
            key: format!("k{seq}"),
            at: at(5),
            command,
        };
        let mut batch = harness.store.state_batch();
        let (minter, outbox) = (&harness.minter, &harness.outbox);
        crate::tickets::apply_control(&rules, &mut batch, minter, outbox, seq, &record).unwrap();
        batch.commit().unwrap();
    }
    let ticket =
        |id: &str| -> Ticket { harness.store.state_get(&keys::ticket(id)).unwrap().unwrap() };
    let first = ticket(&tickets[0]);
    assert_eq!(
        first.conversations,
        [conversations[1].clone()],
        "merged, then split"
    );
    let split_off = ticket(&conversations_ticket(&harness, &conversations[0]));
    let indexed = |contact: &str| -> Vec<String> {
        let prefix = keys::contact_tickets(contact);
        let found = harness.store.state_scan::<()>(&prefix, None, 10).unwrap();
        let mut ids: Vec<String> = found
            .into_iter()
            .map(|(key, ())| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            .collect();
        ids.sort();
        ids
    };
    let (a, c) = (harness.ids[0].clone(), harness.ids[2].clone());
    let mut of_a = vec![first.id.clone(), split_off.id.clone()];
    of_a.sort();
    assert_eq!(
        indexed(&a),
        of_a,
        "the merged ticket left the index with its mirror"
    );
    assert_eq!(
        split_off.contact_id, a,
        "a split's ticket keeps the contact"
    );

    let mut batch = harness.store.state_batch();
    let mut survivor = follow(&batch, &c).unwrap().unwrap();
    let absorbed = follow(&batch, &a).unwrap().unwrap();
    merge::absorb(&mut batch, &mut survivor, absorbed).unwrap();
    batch.commit().unwrap();
    assert_eq!(
        ticket(&first.id).contact_id,
        c,
        "holds none of a's conversations"
    );
    assert_eq!(ticket(&split_off.id).contact_id, c);
    assert!(indexed(&a).is_empty());
    let mut of_c = vec![tickets[2].clone(), first.id, split_off.id];
    of_c.sort();
    assert_eq!(indexed(&c), of_c);
}

fn conversations_ticket(harness: &Harness, conversation: &str) -> String {
    let key = keys::conversation(conversation);
    let found: crate::conversations::Conversation = harness.store.state_get(&key).unwrap().unwrap();
    found.ticket_id
}

/// Builds `n` contacts with disjoint identities, then merges them pairwise in the order
/// `order` (pairs of indexes, the first surviving), each in its own step.
fn merge_in_order(n: usize, order: &[(usize, usize)]) -> (Harness, Vec<Identity>) {
    let mut harness = Harness::new();
    let mut all = Vec::new();
    for i in 0..n {
        let identities = vec![
            email(&format!("p{i}@example.com")),
            visitor(&format!("v{i}")),
        ];
        all.extend(identities.clone());
        harness.resolve(&sender(None, identities), at(i as i64));
    }
    for &(into, from) in order {
        let mut batch = harness.store.state_batch();
        let a = follow(&batch, &harness.ids[into]).unwrap().unwrap();
        let b = follow(&batch, &harness.ids[from]).unwrap().unwrap();
        if a.id != b.id {
            let mut survivor = a;
            merge::absorb(&mut batch, &mut survivor, b).unwrap();
        }
        batch.commit().unwrap();
    }
    (harness, all)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Merging in any order gives the same final identity set, and no contact is lost: every
    /// id ever minted still leads to a live contact holding every identity.
    #[test]
    fn merges_in_any_order_end_in_the_same_identity_set(
        order in Just((0..4usize).flat_map(|a| (0..4usize).map(move |b| (a, b))).collect::<Vec<_>>())
            .prop_shuffle()
            .prop_map(|pairs| pairs.into_iter().filter(|(a, b)| a != b).collect::<Vec<_>>()),
    ) {
        let (harness, all) = merge_in_order(4, &order);
        let mut expected = all.clone();
        expected.sort();
        let mut survivors = std::collections::BTreeSet::new();
        for id in &harness.ids {
            let live = follow_in_store(&harness.store, id).unwrap();
            prop_assert!(live.is_some(), "contact {} was lost", id);
            let live = live.unwrap();
            prop_assert!(live.is_live());
            let mut held = live.identities.clone();
            held.sort();
            prop_assert_eq!(&held, &expected);
            survivors.insert(live.id);
        }
        prop_assert_eq!(survivors.len(), 1);
        for identity in &all {
            let holder = find(&harness.store, identity).unwrap().map(|c| c.id);
            prop_assert_eq!(holder.as_ref(), survivors.iter().next());
        }
    }

    /// A chain of merges in a random order never loses a contact.
    #[test]
    fn a_merge_never_loses_a_contact(
        pairs in proptest::collection::vec((0..5usize, 0..5usize), 0..8),
    ) {
        let (harness, all) = merge_in_order(5, &pairs);
        let mut held = Vec::new();
        let mut live_ids = std::collections::BTreeSet::new();
        for id in &harness.ids {
            let live = follow_in_store(&harness.store, id).unwrap();
            prop_assert!(live.is_some(), "contact {} was lost", id);
            let live = live.unwrap();
            if live_ids.insert(live.id.clone()) {
                held.extend(live.identities);
            }
        }
        held.sort();
        let mut expected = all;
        expected.sort();
        prop_assert_eq!(held, expected);
    }
}
