//! Erasure: the journal redacted, attachments deleted.

use super::*;

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
    )
    .unwrap();
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
    assert!(
        matches!(applied.outcome, crate::model::ControlOutcome::Done(_)),
        "{:?}",
        applied.outcome
    );
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
