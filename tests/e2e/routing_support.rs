//! A harness for routing and ticket tests: the real processor over a temporary state store,
//! email threads as `Inbound` values, control commands as journaled records, and the events
//! each record produced.

use chrono::{DateTime, Duration, TimeZone, Utc};
use deskgate::config::Config;
use deskgate::events::OutboxWriter;
use deskgate::ids::Minter;
use deskgate::model::{
    Bounce, ControlCommand, ControlRecord, DedupeKey, EmailMeta, Identity, Inbound, Record, Sender,
    Ticket,
};
use deskgate::processor::Processor;
use deskgate::routing::RuleSet;
use deskgate::store::{keys, Store};
use serde_json::Value;
use uuid::Uuid;

pub const CONFIG: &str = r#"
[channels.mail]
kind = "api"
[channels.mail.tickets]
pipeline = "support"
[channels.mail.tickets.routing]
rule = "users_and_teams"
users = ["alice"]
available_only = false

[channels.notes]
kind = "api"
[channels.notes.tickets]
create = false

[routing.users.alice]
name = "Alice"
email = "alice@desk.example"

[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "new", label = "New", open = true },
  { id = "waiting_on_contact", label = "Waiting on contact", open = true },
  { id = "waiting_on_us", label = "Waiting on us", open = true },
  { id = "closed", label = "Closed", open = false },
]
[[routing.pipelines.support.actions]]
status = "new"
action = "acknowledge"
template = "ticket_received"
[[routing.pipelines.support.actions]]
status = "waiting_on_us"
action = "notify"
template = "customer_replied"
owner = true
"#;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub processor: Processor,
    pub rules: RuleSet,
    /// Every record applied, for replays.
    pub journal: Vec<Record>,
    pub seq: u64,
    pub outbox_seen: u64,
    pub t0: DateTime<Utc>,
}

impl Harness {
    pub fn new(extra: &str) -> Harness {
        Harness::with_config(&format!("{CONFIG}\n{extra}"))
    }

    pub fn with_config(text: &str) -> Harness {
        Harness::with_rules(rules(text))
    }

    pub fn with_rules(rules: RuleSet) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let processor = processor(&store, &rules);
        Harness {
            dir,
            store,
            processor,
            rules,
            journal: Vec::new(),
            seq: 0,
            outbox_seen: 0,
            t0: Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
        }
    }

    /// Journals a record, lets the processor apply it, and returns the events it produced.
    pub fn apply(&mut self, record: Record) -> Vec<Value> {
        self.seq += 1;
        self.journal.push(record.clone());
        let key = DedupeKey::of(&record);
        self.store
            .journal_append([(self.seq, &key, &record)])
            .unwrap();
        let position = self.processor.step(self.seq - 1, self.seq).unwrap();
        assert_eq!(position.cursor, self.seq);
        let events = self
            .store
            .outbox_read(self.outbox_seen, position.outbox, 1000)
            .unwrap();
        self.outbox_seen = position.outbox;
        events
            .into_iter()
            .map(|(_, bytes)| serde_json::from_slice(&bytes).unwrap())
            .collect()
    }

    pub fn mail(&mut self, mail: Mail) -> Vec<Value> {
        let at = self.t0 + Duration::minutes(self.seq as i64);
        self.apply(Record::Inbound(Box::new(mail.build(at))))
    }

    pub fn control(&mut self, command: ControlCommand) -> (Outcome, Vec<Value>) {
        let at = self.t0 + Duration::minutes(self.seq as i64);
        self.control_at(command, at)
    }

    pub fn control_at(
        &mut self,
        command: ControlCommand,
        at: DateTime<Utc>,
    ) -> (Outcome, Vec<Value>) {
        let record = Record::Control(Box::new(ControlRecord {
            key: format!("k{}", self.seq + 1),
            at,
            command,
        }));
        let events = self.apply(record);
        let outcome = self
            .store
            .state_get(&keys::control_outcome(self.seq))
            .unwrap()
            .expect("an outcome is stored");
        (outcome, events)
    }

    pub fn ticket(&self, id: &str) -> Option<Ticket> {
        self.store.state_get(&keys::ticket(id)).unwrap()
    }

    /// This harness's journal written into a fresh store, not yet applied (for replay tests):
    /// the folder (keep it alive), the store, and how many records it holds.
    pub fn journal_on_fresh_store(&self) -> (tempfile::TempDir, Store, u64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let records: Vec<_> = self.journal.iter().map(|r| (DedupeKey::of(r), r)).collect();
        store
            .journal_append(
                records
                    .iter()
                    .enumerate()
                    .map(|(i, (key, record))| (i as u64 + 1, key, *record)),
            )
            .unwrap();
        (dir, store, records.len() as u64)
    }
}

pub fn processor(store: &Store, rules: &RuleSet) -> Processor {
    processor_in_steps_of(store, rules, 64)
}

/// The harness's processor, applying at most `batch` records a step.
pub fn processor_in_steps_of(store: &Store, rules: &RuleSet, batch: usize) -> Processor {
    let instance = Uuid::from_u128(7);
    Processor::new(
        store.clone(),
        Minter::new(instance),
        OutboxWriter::new("test".into(), instance),
        batch,
    )
    .with_routing(std::sync::Arc::new(rules.clone()))
}

pub fn rules(text: &str) -> RuleSet {
    let config = Config::parse(text).unwrap();
    let problems = config.validate();
    assert!(problems.is_empty(), "{problems:?}");
    let mut rules = RuleSet::compile(&config);
    // The corpus mails are years old: judged by age they would be history, which fires
    // nothing; these tests are about what messages do, so nothing is history here.
    rules.history_age = None;
    rules
}

/// An email as the email channel hands it over: threaded on its root Message-ID.
pub struct Mail {
    pub id: &'static str,
    pub root: &'static str,
    pub from: &'static str,
    pub channel: &'static str,
    pub forwarded: bool,
    pub automatic: bool,
    pub bounce: bool,
}

pub fn mail(id: &'static str, root: &'static str, from: &'static str) -> Mail {
    Mail {
        id,
        root,
        from,
        channel: "mail",
        forwarded: false,
        automatic: false,
        bounce: false,
    }
}

impl Mail {
    pub fn build(self, at: DateTime<Utc>) -> Inbound {
        let sender = Sender {
            name: None,
            identities: vec![Identity::Email {
                address: self.from.to_owned(),
            }],
            ..Sender::default()
        };
        let mut inbound = Inbound::new(self.channel, self.id, self.root, sender, "text", at);
        inbound.subject = Some(format!("about {}", self.root));
        let replying = self.id != self.root;
        inbound.email = Some(EmailMeta {
            message_id: self.id.to_owned(),
            in_reply_to: if replying {
                vec![self.root.to_owned()]
            } else {
                vec![]
            },
            references: if replying {
                vec![self.root.to_owned()]
            } else {
                vec![]
            },
            ..EmailMeta::default()
        });
        inbound.flags.forwarded = self.forwarded;
        inbound.flags.automatic = self.automatic;
        if self.bounce {
            inbound.flags.bounce = Some(Bounce {
                recipient: Some(self.from.to_owned()),
                status: Some("5.1.1".into()),
                ..Bounce::default()
            });
        }
        inbound
    }
}

pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["type"] == format!("deskgate.ticket.{kind}")
                || e["type"] == format!("deskgate.conversation.{kind}")
        })
        .collect()
}

pub fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// The conversation a ticket-opening message started: the first event that names one.
pub fn created_conversation(events: &[Value]) -> String {
    events
        .iter()
        .find_map(|e| e["data"]["conversation"]["id"].as_str())
        .expect("an event names the conversation")
        .to_owned()
}

pub fn created_ticket(events: &[Value]) -> String {
    of_type(events, "created")[0]["data"]["ticket"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What the email work's parser is expected to flag on these corpus mails (their headers say
/// so: `X-Autoreply`, `Auto-Submitted`, a delivery status report). Or-ed into whatever the
/// parser already set, so this test keeps passing once the parser sets them itself.
pub fn expected_flags(name: &str, inbound: &mut Inbound) {
    match name {
        "auto_reply.eml" | "auto_reply_with_auto_submitted.eml" => {
            inbound.flags.automatic = true;
        }
        "bounced_gmail.eml" => {
            inbound.flags.automatic = true;
            inbound.flags.bounce.get_or_insert_with(Bounce::default);
        }
        _ => {}
    }
}

impl Harness {
    /// A real mail from the corpus through the email channel's entry point, placed on the
    /// thread of `root` (as email threading does with its References) with a unique
    /// external id (several corpus files share one Message-ID).
    pub fn corpus_mail(&mut self, name: &str, root: &str) -> Vec<Value> {
        let path = test_kit::corpus()
            .join("email/chatwoot/spec/fixtures/files")
            .join(name);
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let blobs = deskgate::store::Blobs::open(self.dir.path()).unwrap();
        let at = self.t0 + Duration::minutes(self.seq as i64);
        let record = deskgate::channels::email::to_record("mail", &raw, at, &blobs, None).unwrap();
        let Record::Inbound(mut inbound) = record else {
            panic!("{name} was quarantined");
        };
        inbound.thread_key = root.to_owned();
        inbound.external_id = format!("{name}:{}", inbound.external_id);
        // Email threads by Message-ID: every mail of the case names the thread's root.
        if let Some(email) = inbound.email.as_mut() {
            if !email
                .in_reply_to
                .iter()
                .chain(&email.references)
                .any(|id| id == root)
            {
                email.in_reply_to.insert(0, root.to_owned());
            }
        }
        expected_flags(name, &mut inbound);
        let events = self.apply(Record::Inbound(inbound));
        // The root is the agent's mail the customer answered: deskgate indexed it when it sent
        // it. Index it here, on the conversation the first mail opened.
        let root_key = keys::email_message("mail", root);
        if self.store.state_get::<String>(&root_key).unwrap().is_none() {
            if let Some(conversation) = events
                .iter()
                .find_map(|e| e["data"]["conversation"]["id"].as_str())
            {
                let mut batch = self.store.state_batch();
                batch.put(root_key, &conversation.to_owned());
                batch.commit().unwrap();
            }
        }
        events
    }
}

/// A control record's answer in its stored shape (`{status, body}`), as the tests read it.
#[derive(Debug, serde::Deserialize)]
pub struct Outcome {
    pub status: u16,
    pub body: Value,
}
