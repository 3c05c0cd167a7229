mod consenting;
mod erasing;
mod merging;

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

/// A conversation's later messages, each in its own step as under live load, write only
/// their own index entry: the conversation is indexed under its contact once.
#[test]
fn a_conversation_is_indexed_under_its_contact_once() {
    let harness = Harness::new();
    let index = |seq: u64| {
        let before = harness.store.state_ops();
        let mut batch = harness.store.state_batch();
        index_message(&mut batch, "contact-1", "conversation-1", seq).unwrap();
        batch.commit().unwrap();
        harness.store.state_ops().since(&before).written
    };
    assert_eq!(
        index(1),
        2,
        "the first message indexes the conversation and itself"
    );
    assert_eq!(index(2), 1, "a later one indexes only itself");
    let conversations = harness
        .store
        .state_scan::<()>(&keys::contact_conversations("contact-1"), None, 10)
        .unwrap();
    assert_eq!(conversations.len(), 1);
    for seq in [1, 2] {
        let key = keys::conversation_message("conversation-1", seq);
        assert_eq!(harness.store.state_get::<()>(&key).unwrap(), Some(()));
    }
}
