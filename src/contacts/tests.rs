use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::announce::Announcer;
use super::*;
use crate::events::OutboxWriter;
use crate::identity;
use crate::ids::Minter;
use crate::model::Sender;
use crate::store::Store;

fn email(a: &str) -> Identity {
    Identity::Email { address: a.into() }
}

fn phone(n: &str) -> Identity {
    Identity::Phone { number: n.into() }
}

fn ext(id: &str) -> Identity {
    identity::external("api", id)
}

fn visitor(token: &str) -> Identity {
    identity::chat_visitor("chat", token)
}

fn sender(name: Option<&str>, identities: Vec<Identity>) -> Sender {
    Sender {
        name: name.map(str::to_owned),
        identities,
        ..Sender::default()
    }
}

/// One row of the resolution table: a sender, the contact (by order of creation) the message
/// must land on, the events it must emit, and the contacts (by order of creation) that must
/// then be tombstones merged into it.
struct Case {
    what: &'static str,
    sender: Sender,
    contact: usize,
    events: &'static [&'static str],
    absorbed: &'static [usize],
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    minter: Minter,
    outbox: OutboxWriter,
    /// Ids in order of creation.
    ids: Vec<String>,
    events_seen: u64,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Harness {
            _dir: dir,
            store,
            minter: Minter::new(Uuid::nil()),
            outbox: OutboxWriter::new("test".into(), Uuid::nil()),
            ids: Vec::new(),
            events_seen: 0,
        }
    }

    /// Resolves one sender in its own committed step; returns the resolution and the event
    /// types it emitted.
    fn resolve(&mut self, sender: &Sender, at: DateTime<Utc>) -> (Resolution, Vec<String>) {
        let mut batch = self.store.state_batch();
        let resolution = resolve(&mut batch, &self.minter, sender, at).unwrap();
        let announce = Announcer {
            outbox: &self.outbox,
            at,
            channel: None,
        };
        announce.resolution(&mut batch, &resolution).unwrap();
        batch.commit().unwrap();
        if resolution.created {
            self.ids.push(resolution.contact.id.clone());
        }
        (resolution, self.new_events())
    }

    fn new_events(&mut self) -> Vec<String> {
        let events = self
            .store
            .outbox_read(self.events_seen, u64::MAX, 1000)
            .unwrap();
        let mut types = Vec::new();
        for (seq, event) in events {
            self.events_seen = seq;
            let event: serde_json::Value = serde_json::from_slice(&event).unwrap();
            types.push(event["type"].as_str().unwrap().to_owned());
        }
        types
    }

    fn contact(&self, id: &str) -> Contact {
        self.store.state_get(&keys::contact(id)).unwrap().unwrap()
    }
}

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + Duration::minutes(minutes)
}

#[test]
fn resolution_rules() {
    let cases = [
        Case {
            what: "an unknown email creates a contact",
            sender: sender(None, vec![email("ana@example.com")]),
            contact: 0,
            events: &["deskgate.contact.created"],
            absorbed: &[],
        },
        Case {
            what: "a known email with a new phone and a name attaches both",
            sender: sender(
                Some("Ana"),
                vec![email("ana@example.com"), phone("+14155550100")],
            ),
            contact: 0,
            events: &["deskgate.contact.updated"],
            absorbed: &[],
        },
        Case {
            what: "the phone alone (a WhatsApp message) finds the same contact, no event",
            sender: sender(None, vec![phone("+14155550100")]),
            contact: 0,
            events: &[],
            absorbed: &[],
        },
        Case {
            what: "a chat visitor nobody knows yet is a new contact",
            sender: sender(None, vec![visitor("v1")]),
            contact: 1,
            events: &["deskgate.contact.created"],
            absorbed: &[],
        },
        Case {
            what: "the visitor gives Ana's email: the visitor merges into Ana (older)",
            sender: sender(None, vec![visitor("v1"), email("ana@example.com")]),
            contact: 0,
            events: &["deskgate.contact.merged"],
            absorbed: &[1],
        },
        Case {
            what: "an integration id for Ana attaches",
            sender: sender(None, vec![ext("cust-1"), email("ana@example.com")]),
            contact: 0,
            events: &["deskgate.contact.updated"],
            absorbed: &[],
        },
        Case {
            what: "another integration id is another person",
            sender: sender(None, vec![ext("cust-2")]),
            contact: 2,
            events: &["deskgate.contact.created"],
            absorbed: &[],
        },
        Case {
            what: "cust-2 writing from Ana's shared email: guard, no merge, strongest wins",
            sender: sender(None, vec![ext("cust-2"), email("ana@example.com")]),
            contact: 2,
            events: &["deskgate.contact.merge_suggested"],
            absorbed: &[],
        },
        Case {
            what: "a new phone with the new integration id conflicts with nothing",
            sender: sender(None, vec![ext("cust-2"), phone("+442079460958")]),
            contact: 2,
            events: &["deskgate.contact.updated"],
            absorbed: &[],
        },
        Case {
            what: "a Messenger PSID is new",
            sender: sender(None, vec![identity::messenger("fb", "p1", "111")]),
            contact: 3,
            events: &["deskgate.contact.created"],
            absorbed: &[],
        },
        Case {
            what: "the same person on another page is another contact",
            sender: sender(None, vec![identity::messenger("fb", "p2", "222")]),
            contact: 4,
            events: &["deskgate.contact.created"],
            absorbed: &[],
        },
        Case {
            what: "the first page learns an email",
            sender: sender(
                None,
                vec![
                    identity::messenger("fb", "p1", "111"),
                    email("bo@example.com"),
                ],
            ),
            contact: 3,
            events: &["deskgate.contact.updated"],
            absorbed: &[],
        },
        Case {
            what: "the second page gives the same email: different pages do not conflict",
            sender: sender(
                None,
                vec![
                    identity::messenger("fb", "p2", "222"),
                    email("bo@example.com"),
                ],
            ),
            contact: 3,
            events: &["deskgate.contact.merged"],
            absorbed: &[4],
        },
        Case {
            what: "a second PSID on the same page with Bo's email: guard",
            sender: sender(
                None,
                vec![
                    identity::messenger("fb", "p1", "999"),
                    email("bo@example.com"),
                ],
            ),
            contact: 3,
            events: &[],
            absorbed: &[],
        },
    ];
    let mut harness = Harness::new();
    for (minute, case) in cases.iter().enumerate() {
        let (resolution, events) = harness.resolve(&case.sender, at(minute as i64));
        let what = case.what;
        assert_eq!(resolution.contact.id, harness.ids[case.contact], "{what}");
        assert_eq!(events, case.events, "{what}");
        for &absorbed in case.absorbed {
            let tombstone = harness.contact(&harness.ids[absorbed]);
            assert_eq!(
                tombstone.merged_into.as_deref(),
                Some(harness.ids[case.contact].as_str()),
                "{what}"
            );
        }
        let stored = harness.contact(&resolution.contact.id);
        assert_eq!(stored, resolution.contact, "{what}: stored as returned");
    }
    let ana = harness.contact(&harness.ids[0]);
    assert_eq!(ana.name.as_deref(), Some("Ana"));
    assert_eq!(
        ana.identities,
        [
            email("ana@example.com"),
            phone("+14155550100"),
            visitor("v1"),
            ext("cust-1")
        ]
    );
    // The PSID that clashed on page p1 was not attached to anyone.
    let psid = identity::messenger("fb", "p1", "999");
    assert_eq!(find_id(&harness.store, &psid).unwrap(), None);
    // An absorbed id still resolves to its survivor.
    let followed = follow_in_store(&harness.store, &harness.ids[1])
        .unwrap()
        .unwrap();
    assert_eq!(followed.id, harness.ids[0]);
}

#[test]
fn an_address_keeps_the_spelling_it_was_first_written_in() {
    let spelled = |raw: &str| Sender {
        identities: vec![identity::email(raw).unwrap()],
        spellings: identity::spellings([raw]),
        ..Sender::default()
    };
    let mut harness = Harness::new();
    let (first, _) = harness.resolve(&spelled("Ana.Lima@Example.COM"), at(1));
    // Another spelling is the same identity; the first spelling stays.
    let (again, events) = harness.resolve(&spelled("ANA.LIMA@example.com"), at(2));
    assert_eq!(again.contact.id, first.contact.id);
    assert!(events.is_empty(), "{events:?}");
    let shown = |contact: &Contact| contact.spellings.clone().into_iter().collect::<Vec<_>>();
    let expected = [(
        "ana.lima@example.com".to_owned(),
        "Ana.Lima@Example.COM".to_owned(),
    )];
    assert_eq!(shown(&harness.contact(&first.contact.id)), expected);
    // A merge brings the absorbed contact's spellings along.
    let (bo, _) = harness.resolve(&spelled("Bo@Example.com"), at(3));
    let mut both = spelled("ana.lima@example.com");
    both.identities.push(email("bo@example.com"));
    let (merged, _) = harness.resolve(&both, at(4));
    assert_eq!(merged.absorbed, [bo.contact.id]);
    assert_eq!(
        shown(&harness.contact(&first.contact.id)),
        [
            expected[0].clone(),
            ("bo@example.com".to_owned(), "Bo@Example.com".to_owned())
        ]
    );
}

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
    );
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
    let ticket: conversations::Ticket = harness
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
    use crate::conversations::{self, Ticket};
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
        index_message(&mut batch, contact, &threaded.conversation.id, i as u64 + 1);
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

#[test]
fn erasure_redacts_the_journal_and_deletes_attachment_blobs() {
    use crate::conversations;
    use crate::model::{Attachment, ContactCommand, DedupeKey, Inbound, Record};
    use crate::store::Blobs;
    let harness = Harness::new();
    let blobs = Blobs::open(harness._dir.path()).unwrap();
    let blob = blobs.put(b"a scanned passport").unwrap();
    let mut inbound = Inbound::new(
        "api",
        "m1",
        "t1",
        sender(Some("Ana"), vec![email("ana@example.com")]),
        "my passport is attached",
        at(1),
    );
    inbound.attachments.push(Attachment {
        id: blob.clone(),
        name: Some("passport.pdf".into()),
        content_type: "application/pdf".into(),
        size: 18,
    });
    let record = Record::Inbound(Box::new(inbound.clone()));
    harness
        .store
        .journal_append([(1, &DedupeKey::of(&record), &record)])
        .unwrap();
    let mut batch = harness.store.state_batch();
    let resolution = resolve(&mut batch, &harness.minter, &inbound.sender, at(1)).unwrap();
    let threaded = conversations::thread(
        &mut batch,
        &harness.minter,
        &inbound,
        &resolution.contact.id,
        "#",
    )
    .unwrap();
    index_message(
        &mut batch,
        &resolution.contact.id,
        &threaded.conversation.id,
        1,
    );
    assert!(batch
        .get::<String>(&keys::thread("api", "t1"))
        .unwrap()
        .is_some());
    let announce = Announcer {
        outbox: &harness.outbox,
        at: at(2),
        channel: None,
    };
    let command = ContactCommand::Erase {
        contact_id: resolution.contact.id.clone(),
    };
    let applied = control::apply(&mut batch, &announce, 2, &command).unwrap();
    let outcome = applied.outcome;
    assert_eq!(outcome.status, 200, "{:?}", outcome.body);
    assert_eq!(
        applied.erased.unwrap().conversations,
        std::slice::from_ref(&threaded.conversation.id),
        "the processor is told which conversations to forget in outbound"
    );
    batch.commit().unwrap();
    // The thread key (which can be a phone number or a visitor token) is gone with its index.
    let conversation: conversations::Conversation = harness
        .store
        .state_get(&keys::conversation(&threaded.conversation.id))
        .unwrap()
        .unwrap();
    assert_eq!(conversation.thread_key, "");
    assert_eq!(
        harness
            .store
            .state_get::<String>(&keys::thread("api", &inbound.thread_key))
            .unwrap(),
        None
    );
    // Committed but not yet carried out: the journal still holds the body.
    assert!(blobs.get(&blob).unwrap().is_some());
    assert_eq!(
        erase::finish_pending(&harness.store, Some(&blobs)).unwrap(),
        1
    );
    assert_eq!(
        erase::finish_pending(&harness.store, Some(&blobs)).unwrap(),
        0
    );
    let Some(Record::Inbound(redacted)) = harness.store.journal_get(1).unwrap() else {
        panic!("the journal record is gone");
    };
    assert_eq!(redacted.text, "");
    assert_eq!(redacted.sender, Sender::default());
    assert!(redacted.attachments.is_empty());
    assert_eq!(redacted.external_id, "m1", "deduplication still works");
    assert_eq!(blobs.get(&blob).unwrap(), None);
    assert_eq!(
        find(&harness.store, &email("ana@example.com")).unwrap(),
        None
    );
    let tombstone = harness.contact(&resolution.contact.id);
    assert!(tombstone.erased && tombstone.identities.is_empty() && tombstone.name.is_none());
}
