//! The processor's half of outbound, driven through the library with real mail from the shared
//! corpus: auto-replies (sisimai RFC 3834, chatwoot) get no acknowledgement, a customer mail's
//! acknowledgement and an agent's reply are threaded to it, a hard bounce suppresses the
//! address, and the threaded mail goes through a real SMTP server (aiosmtpd) intact.

use std::sync::Arc;

use crate::outbound_support::header;
use chrono::Utc;
use deskgate::channels::email::to_record;
use deskgate::config::{Config, JournalConfig};
use deskgate::events::OutboxWriter;
use deskgate::ids::Minter;
use deskgate::journal::{self, Appended, JournalHandle};
use deskgate::model::{
    AgentRef, Bounce, Identity, Inbound, OutboundRecord, Record, ReplyRequest, Sender,
};
use deskgate::outbound::smtp::Smtp;
use deskgate::outbound::{OutgoingItem, Payload, Planner, RequestOutcome};
use deskgate::processor::Processor;
use deskgate::store::{keys, Blobs, Store};
use serde_json::Value;
use test_kit::corpus;
use test_kit::smtpd::Smtpd;
use uuid::Uuid;

struct Pipeline {
    store: Store,
    blobs: Blobs,
    journal: JournalHandle,
    processor: Processor,
    cursor: u64,
    config: Config,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    fn new(smtp_port: u16) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(&format!(
            "[channels.mail]\nkind = \"api\"\n[outbound.mailboxes.support]\naddress = \"help@acme.test\"\ncompany_name = \"Acme\"\n\
             channels = [\"mail\"]\nacknowledge_new_tickets = true\n\
             [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"plain\"\n"
        ))
        .unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let store = Store::open(&dir.path().join("state")).unwrap();
        let blobs = Blobs::open(&dir.path().join("state")).unwrap();
        let instance = Uuid::new_v4();
        let planner = Planner::new(&config.outbound).unwrap();
        let processor = Processor::new(
            store.clone(),
            Minter::new(instance),
            OutboxWriter::new("t".into(), instance),
            64,
        )
        .with_outbound(Arc::new(planner));
        let (journal, _writer) = journal::start(store.clone(), &JournalConfig::default()).unwrap();
        Pipeline {
            store,
            blobs,
            journal,
            processor,
            cursor: 0,
            config,
            _dir: dir,
        }
    }

    /// Journals a record and applies everything up to it; returns its seq.
    async fn apply(&mut self, record: Record) -> u64 {
        let seq = match self.journal.append(record).await.unwrap() {
            Appended::New { seq } | Appended::Duplicate { seq } => seq,
        };
        self.cursor = self.processor.step(self.cursor, seq).unwrap().cursor;
        seq
    }

    /// Journals agent Hal Ito's reply (idempotency key `r1`) and applies it; returns its seq.
    async fn reply(&mut self, conversation: &str, text: &str) -> u64 {
        let request = ReplyRequest {
            idempotency_key: "r1".into(),
            conversation_id: conversation.to_owned(),
            agent: AgentRef {
                id: "a1".into(),
                name: Some("Hal Ito".into()),
                ..AgentRef::default()
            },
            text: text.to_owned(),
            html: None,
            attachments: Vec::new(),
            requested_at: Utc::now(),
        };
        self.apply(Record::Outbound(Box::new(OutboundRecord::Reply(request))))
            .await
    }

    async fn mail(&mut self, path: &str) -> u64 {
        let raw = std::fs::read(corpus().join(path)).unwrap();
        let record = to_record("mail", &raw, Utc::now(), &self.blobs, None).unwrap();
        assert!(matches!(record, Record::Inbound(_)), "{path} parses");
        self.apply(record).await
    }

    fn events(&self) -> Vec<Value> {
        let events = self.store.outbox_read(0, u64::MAX, 10_000).unwrap();
        events
            .iter()
            .map(|(_, e)| serde_json::from_slice(e).unwrap())
            .collect()
    }

    fn outgoing(&self) -> Vec<OutgoingItem> {
        let pending = self
            .store
            .state_scan::<String>(keys::OUTGOING_PENDING, None, 1000)
            .unwrap();
        pending
            .iter()
            .map(|(_, id)| self.store.state_get(&keys::outgoing(id)).unwrap().unwrap())
            .collect()
    }
}

fn email(item: &OutgoingItem) -> &deskgate::outbound::EmailPayload {
    match &item.payload {
        Payload::Email(mail) => mail,
        other => panic!("not a mail: {other:?}"),
    }
}

#[tokio::test]
async fn auto_replies_from_the_corpus_get_no_acknowledgement() {
    let mut pipeline = Pipeline::new(25);
    let auto_replies = [
        "email/sisimai/maildir/dos/rfc3834-01.eml",
        "email/chatwoot/spec/fixtures/files/auto_reply.eml",
        "email/chatwoot/spec/fixtures/files/auto_reply_with_auto_submitted.eml",
    ];
    for path in auto_replies {
        pipeline.mail(path).await;
    }
    let events = pipeline.events();
    let created = events
        .iter()
        .filter(|e| e["type"] == "deskgate.ticket.created")
        .count();
    assert!(
        created >= 2,
        "the auto-replies are still recorded as messages"
    );
    let suppressed: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "deskgate.outbound.suppressed")
        .collect();
    assert_eq!(
        suppressed.len(),
        created,
        "every new ticket's acknowledgement was suppressed"
    );
    for event in &suppressed {
        assert!(
            event["data"]["reason"]
                .as_str()
                .unwrap()
                .contains("automatic"),
            "{event}"
        );
    }
    assert!(pipeline.outgoing().is_empty());
}

#[tokio::test]
async fn acknowledgement_and_reply_thread_to_the_customers_mail() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&dir.path().join("maildir"), test_kit::free_port());
    let mut pipeline = Pipeline::new(smtpd.port);

    // A customer mail that continues a thread: References carry the whole thread.
    pipeline
        .mail("email/chatwoot/spec/fixtures/files/references.eml")
        .await;
    let items = pipeline.outgoing();
    assert_eq!(items.len(), 1, "one acknowledgement");
    let ack = email(&items[0]);
    let customer_id = "0CB459E0-0336-41DA-BC88-E6E28C697DDBF@chatwoot.com";
    assert_eq!(ack.in_reply_to.as_deref(), Some(customer_id));
    assert_eq!(
        ack.references,
        [
            "4e6e35f5a38b4_479f13bb90078178@small-app-01.mail",
            "test-reference-id",
            customer_id
        ]
    );
    assert_eq!(ack.auto_submitted.as_deref(), Some("auto-replied"));
    let conversation = items[0].conversation_id.clone();
    assert_eq!(
        deskgate::message_id::own_conversation_of(&ack.message_id),
        Some(conversation.clone())
    );

    // An agent's reply threads the same way, with the next Message-ID of the conversation.
    let seq = pipeline.reply(&conversation, "Fixed.").await;
    let outcome: RequestOutcome = pipeline
        .store
        .state_get(&keys::outbound_request(seq))
        .unwrap()
        .unwrap();
    assert_eq!(outcome.status, "queued");
    let reply_item = pipeline
        .outgoing()
        .into_iter()
        .find(|i| i.id == outcome.item_id.clone().unwrap())
        .unwrap();
    let reply = email(&reply_item);
    assert_eq!(reply.in_reply_to.as_deref(), Some(customer_id));
    assert_eq!(reply.references, ack.references);
    assert!(reply
        .message_id
        .starts_with(&format!("deskgate.{conversation}.2@")));

    // Through a real SMTP server, the headers arrive with angle brackets and in full.
    let smtp = Smtp::new(&pipeline.config.outbound.mailboxes, pipeline.blobs.clone()).unwrap();
    smtp.send(reply).await.unwrap();
    let mails = smtpd.wait_for(1, std::time::Duration::from_secs(20)).await;
    assert_eq!(
        header(&mails[0], "In-Reply-To").unwrap(),
        format!("<{customer_id}>")
    );
    assert_eq!(
        header(&mails[0], "References").unwrap(),
        format!("<4e6e35f5a38b4_479f13bb90078178@small-app-01.mail> <test-reference-id> <{customer_id}>")
    );
    assert_eq!(
        header(&mails[0], "Message-ID").unwrap(),
        format!("<{}>", reply.message_id)
    );
    assert_eq!(
        header(&mails[0], "From").unwrap(),
        "\"Hal Ito from Acme\" <help@acme.test>"
    );
}

/// A hard bounce for an address suppresses automatic mail to it, even on a new thread.
#[tokio::test]
async fn a_hard_bounce_suppresses_automatic_mail_to_the_address() {
    let mut pipeline = Pipeline::new(25);
    let sender = Sender {
        name: None,
        identities: vec![Identity::Email {
            address: "mailer-daemon@mx.example".into(),
        }],
        ..Sender::default()
    };
    let mut bounce = Inbound::new(
        "mail",
        "bounce-1",
        "bounce-1",
        sender,
        "delivery failed",
        Utc::now(),
    );
    bounce.flags.automatic = true;
    bounce.flags.bounce = Some(Bounce {
        recipient: Some("gone@example.org".into()),
        status: Some("5.1.1".into()),
        ..Bounce::default()
    });
    pipeline.apply(Record::Inbound(Box::new(bounce))).await;
    let sender = Sender {
        name: None,
        identities: vec![Identity::Email {
            address: "gone@example.org".into(),
        }],
        ..Sender::default()
    };
    let later = Inbound::new(
        "mail",
        "later-1",
        "later-1",
        sender,
        "I am back",
        Utc::now(),
    );
    pipeline.apply(Record::Inbound(Box::new(later))).await;
    let events = pipeline.events();
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "deskgate.outbound.suppressed")
        .map(|e| e["data"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("mailer-daemon@mx.example"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("gone@example.org is suppressed") && reasons[1].contains("5.1.1"),
        "{reasons:?}"
    );
    assert!(pipeline.outgoing().is_empty(), "nothing is queued");
}

/// Erasing a contact reaches what outbound holds about them: the reply context, the outgoing
/// messages (pending ones are not sent) and the agent's reply text in the journal.
#[tokio::test]
async fn erasing_a_contact_blanks_its_outgoing_messages_and_agent_replies() {
    use deskgate::model::{ContactCommand, ContactControl};
    use deskgate::outbound::ItemStatus;
    let mut pipeline = Pipeline::new(25);
    pipeline
        .mail("email/chatwoot/spec/fixtures/files/references.eml")
        .await;
    let ack = pipeline.outgoing().remove(0);
    let conversation = ack.conversation_id.clone();
    let reply_seq = pipeline
        .reply(&conversation, "Your order 4417 ships to 12 Elm Street.")
        .await;
    assert_eq!(
        pipeline.outgoing().len(),
        2,
        "acknowledgement and reply wait"
    );
    let contact = pipeline.events()[0]["subject"].as_str().unwrap().to_owned();
    assert!(pipeline
        .store
        .state_get::<Value>(&keys::reply_context(&conversation))
        .unwrap()
        .is_some());

    pipeline
        .apply(Record::Contact(ContactControl {
            key: "erase-1".into(),
            command: ContactCommand::Erase {
                contact_id: contact,
            },
            received_at: Utc::now(),
        }))
        .await;
    assert!(pipeline.outgoing().is_empty(), "nothing pending is sent");
    let prefix = keys::conversation_outgoing(&conversation);
    let items = pipeline.store.state_scan::<()>(&prefix, None, 10).unwrap();
    assert_eq!(items.len(), 2);
    for (key, ()) in items {
        let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let item: OutgoingItem = pipeline
            .store
            .state_get(&keys::outgoing(&id))
            .unwrap()
            .unwrap();
        let mail = email(&item);
        assert_eq!((mail.to.as_str(), mail.text.as_str()), ("", ""));
        assert!(
            matches!(&item.status, ItemStatus::Suppressed { reason } if reason == "contact erased"),
            "{:?}",
            item.status
        );
    }
    assert!(pipeline
        .store
        .state_get::<Value>(&keys::reply_context(&conversation))
        .unwrap()
        .is_none());
    let Some(Record::Outbound(reply)) = pipeline.store.journal_get(reply_seq).unwrap() else {
        panic!("the reply's journal record is gone");
    };
    let OutboundRecord::Reply(reply) = *reply else {
        panic!("not a reply: {reply:?}");
    };
    assert_eq!(reply.text, "", "the agent's reply text is redacted");
    assert_eq!(
        reply.idempotency_key, "r1",
        "its retry is still a duplicate"
    );
}
