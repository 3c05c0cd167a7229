use super::*;
use crate::store::Store;
use uuid::Uuid;

fn email(a: &str) -> Identity {
    Identity::Email { address: a.into() }
}

fn phone(n: &str) -> Identity {
    Identity::Phone { number: n.into() }
}

fn sender(name: Option<&str>, identities: Vec<Identity>) -> Sender {
    Sender {
        name: name.map(str::to_owned),
        identities,
    }
}

/// Resolution rules as a table: senders in order, and for each the expected outcome.
#[test]
fn resolution_rules() {
    struct Case {
        sender: Sender,
        /// Index of the contact (by order of creation) the sender resolves to.
        contact: usize,
        created: bool,
        added: Vec<Identity>,
    }
    let cases = [
        Case {
            sender: sender(None, vec![email("ana@example.com")]),
            contact: 0,
            created: true,
            added: vec![],
        },
        Case {
            sender: sender(
                Some("Ana"),
                vec![email("ana@example.com"), phone("+14155550100")],
            ),
            contact: 0,
            created: false,
            added: vec![phone("+14155550100")],
        },
        Case {
            sender: sender(None, vec![phone("+14155550100")]),
            contact: 0,
            created: false,
            added: vec![],
        },
        Case {
            sender: sender(None, vec![email("bo@example.com")]),
            contact: 1,
            created: true,
            added: vec![],
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let minter = Minter::new(Uuid::nil());
    let mut ids = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut batch = store.state_batch();
        let resolution = resolve(
            &mut batch,
            &minter,
            &case.sender,
            chrono::DateTime::UNIX_EPOCH,
        )
        .unwrap();
        batch.commit().unwrap();
        if resolution.created {
            ids.push(resolution.contact.id.clone());
        }
        assert_eq!(resolution.created, case.created, "case {i}");
        assert_eq!(resolution.contact.id, ids[case.contact], "case {i}");
        assert_eq!(resolution.added, case.added, "case {i}");
    }
    let ana: Contact = store.state_get(&keys::contact(&ids[0])).unwrap().unwrap();
    assert_eq!(ana.name.as_deref(), Some("Ana"));
    assert_eq!(
        ana.identities,
        [email("ana@example.com"), phone("+14155550100")]
    );
}
