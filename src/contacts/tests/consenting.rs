//! Consents and the messages held for them, through merges and erasure.

use super::*;
use crate::model::{Consent, ConsentKind, Inbound};

fn consent(kind: ConsentKind, version: u32, minutes: i64) -> Consent {
    Consent {
        kind,
        version,
        at: at(minutes),
    }
}

/// Records `consent` on `channel` for the contact and holds one message (journal seq `held`)
/// of it there, in one committed step.
fn give(harness: &Harness, contact: &mut Contact, channel: &str, given: Consent, held: u64) {
    let mut batch = harness.store.state_batch();
    let announce = Announcer {
        outbox: &harness.outbox,
        at: given.at,
        channel: Some(channel.to_owned()),
    };
    consent::record(&mut batch, &announce, contact, channel, given).unwrap();
    let inbound = Inbound::new(
        channel,
        format!("m{held}"),
        "t",
        Sender::default(),
        "hi",
        at(9),
    );
    assert!(consent::hold(&mut batch, &contact.id, held, &inbound).unwrap());
    batch.commit().unwrap();
}

#[test]
fn a_merge_keeps_the_newer_consent_per_channel_and_moves_held_messages() {
    let mut harness = Harness::new();
    let (mut a, _) = harness.resolve(&sender(None, vec![phone("+14155550100")]), at(1));
    let (mut b, _) = harness.resolve(&sender(None, vec![visitor("v9")]), at(2));
    give(
        &harness,
        &mut a.contact,
        "page",
        consent(ConsentKind::Explicit, 1, 3),
        5,
    );
    give(
        &harness,
        &mut b.contact,
        "page",
        consent(ConsentKind::Implicit, 2, 4),
        6,
    );
    give(
        &harness,
        &mut b.contact,
        "other",
        consent(ConsentKind::Explicit, 1, 5),
        7,
    );

    let both = sender(None, vec![visitor("v9"), phone("+14155550100")]);
    let (merged, _) = harness.resolve(&both, at(6));
    assert_eq!(merged.contact.id, a.contact.id);
    let survivor = harness.contact(&a.contact.id);
    assert_eq!(
        survivor.consent["page"],
        consent(ConsentKind::Implicit, 2, 4)
    );
    assert_eq!(
        survivor.consent["other"],
        consent(ConsentKind::Explicit, 1, 5)
    );

    let mut batch = harness.store.state_batch();
    let held = consent::take_held(&mut batch, &a.contact.id, "page").unwrap();
    let seqs: Vec<u64> = held.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        [5, 6],
        "both contacts' held messages, in journal order"
    );
    assert!(consent::take_held(&mut batch, &b.contact.id, "other")
        .unwrap()
        .is_empty());
    assert_eq!(
        consent::take_held(&mut batch, &a.contact.id, "other")
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn erasure_removes_consents_held_messages_and_taps() {
    let mut harness = Harness::new();
    let (mut a, _) = harness.resolve(&sender(None, vec![visitor("v1")]), at(1));
    give(
        &harness,
        &mut a.contact,
        "page",
        consent(ConsentKind::Explicit, 1, 2),
        11,
    );

    let mut batch = harness.store.state_batch();
    consent::remember_tap(&mut batch, &a.contact.id, 10);
    let contact = harness.contact(&a.contact.id);
    let erased = erase::erase(&mut batch, contact, 12).unwrap();
    batch.commit().unwrap();
    assert_eq!(erased.messages, 2);
    let tombstone = harness.contact(&a.contact.id);
    assert!(
        tombstone.erased && tombstone.consent.is_empty(),
        "{tombstone:?}"
    );
    let pending: erase::PendingErasure = harness
        .store
        .state_get(&keys::erase_pending(12))
        .unwrap()
        .unwrap();
    assert_eq!(
        pending.journal_seqs,
        [10, 11],
        "the tap's and the held message's records are redacted too"
    );
    let mut batch = harness.store.state_batch();
    assert!(consent::take_held(&mut batch, &a.contact.id, "page")
        .unwrap()
        .is_empty());
}
