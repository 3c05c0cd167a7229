//! The verdict, from the outside only: the ledger of what was sent and acknowledged, the
//! whole outbox, the whole JetStream stream, what a reader saw while the faults struck, and
//! the mail the SMTP server received.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use crate::mixed::{Entry, Kind, Ledger};
use crate::rig::{ACKNOWLEDGED, SUBJECT_PREFIX};

/// Everything read back at the end of a run.
pub struct Evidence<'a> {
    pub ledger: &'a Ledger,
    pub events: &'a [Value],
    /// (Nats-Msg-Id, subject, CloudEvent) in stream order.
    pub stream: &'a [(String, String, Value)],
    /// Event ids by sequence, as a reader following the outbox saw them during the run.
    pub live: &'a BTreeMap<u64, String>,
    /// Raw mails the SMTP server received.
    pub mails: &'a [Vec<u8>],
}

#[derive(Default)]
pub struct Verdict {
    pub inputs: usize,
    pub acked: usize,
    /// Acknowledged inputs without a message event.
    pub lost: usize,
    /// Inputs with more than one message event.
    pub duplicated: usize,
    /// Message events, or mails sent, for nothing the harness sent.
    pub invented: usize,
    /// Every other broken rule, in words.
    pub problems: Vec<String>,
    /// Figures for the log.
    pub notes: Vec<String>,
}

const MESSAGE_EVENTS: [&str; 3] = [
    "deskgate.ticket.created",
    "deskgate.ticket.message_added",
    "deskgate.conversation.message_added",
];
const OUTCOMES: [&str; 3] = [
    "deskgate.outbound.sent",
    "deskgate.outbound.failed",
    "deskgate.outbound.suppressed",
];

pub fn verdict(evidence: &Evidence<'_>) -> Verdict {
    let mut verdict = Verdict {
        inputs: evidence.ledger.entries.len(),
        acked: evidence.ledger.entries.values().filter(|e| e.acked).count(),
        ..Verdict::default()
    };
    let mut per_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for entry in evidence.ledger.entries.values() {
        let counts = per_kind.entry(format!("{:?}", entry.kind)).or_default();
        counts.0 += 1;
        counts.1 += usize::from(entry.acked);
    }
    for (kind, (inputs, acked)) in per_kind {
        verdict.notes.push(format!("{kind}={acked}/{inputs}"));
    }
    outbox_sequence(evidence, &mut verdict);
    let messages = message_events(evidence, &mut verdict);
    threads(evidence.ledger, &messages, &mut verdict);
    stream(evidence, &mut verdict);
    acknowledgements(evidence, &mut verdict);
    for (event_type, count) in event_types(evidence.events) {
        verdict.notes.push(format!("{event_type}={count}"));
        if event_type == "deskgate.inbound.quarantined"
            || event_type == "deskgate.sink.dead_lettered"
        {
            verdict.problems.push(format!(
                "{count} {event_type} events: nothing should be set aside"
            ));
        }
    }
    verdict
}

fn event_types(events: &[Value]) -> BTreeMap<&str, usize> {
    let mut types = BTreeMap::new();
    for event in events {
        *types
            .entry(event["type"].as_str().unwrap_or("?"))
            .or_insert(0) += 1;
    }
    types
}

fn seq_of(event: &Value) -> u64 {
    event["sequence"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Sequences run 1..=N without a gap, ids are unique, and what the live reader saw is still
/// there unchanged.
fn outbox_sequence(evidence: &Evidence<'_>, verdict: &mut Verdict) {
    let mut ids = HashSet::new();
    for (i, event) in evidence.events.iter().enumerate() {
        let seq = seq_of(event);
        if seq != i as u64 + 1 {
            verdict.problems.push(format!(
                "outbox sequence gap: event {} has sequence {seq}",
                i + 1
            ));
            break;
        }
        if !ids.insert(event["id"].as_str().unwrap_or_default()) {
            verdict
                .problems
                .push(format!("event id repeated in the outbox: {event}"));
        }
    }
    let changed = evidence
        .live
        .iter()
        .filter(|(seq, id)| {
            evidence
                .events
                .get(**seq as usize - 1)
                .and_then(|e| e["id"].as_str())
                != Some(id.as_str())
        })
        .count();
    if changed > 0 {
        verdict.problems.push(format!(
            "{changed} events a reader saw during the run changed or vanished"
        ));
    }
    verdict.notes.push(format!(
        "outbox={} seen_live={} changed={changed}",
        evidence.events.len(),
        evidence.live.len()
    ));
}

/// A message event: which input it is, and what it did to which ticket.
struct MessageEvent<'a> {
    seq: u64,
    event_type: &'a str,
    ticket: &'a str,
    /// The journal seq and, for mail, where it was fetched from.
    origin: String,
}

/// Message events by (channel, external id); counts lost, duplicated and invented inputs.
fn message_events<'a>(
    evidence: &Evidence<'a>,
    verdict: &mut Verdict,
) -> HashMap<(&'a str, &'a str), Vec<MessageEvent<'a>>> {
    let mut by_input: HashMap<(&str, &str), Vec<MessageEvent>> = HashMap::new();
    for event in evidence.events {
        let event_type = event["type"].as_str().unwrap_or_default();
        if !MESSAGE_EVENTS.contains(&event_type) {
            continue;
        }
        let message = &event["data"]["message"];
        let key = (
            message["channel"].as_str().unwrap_or_default(),
            message["external_id"].as_str().unwrap_or_default(),
        );
        by_input.entry(key).or_default().push(MessageEvent {
            seq: seq_of(event),
            event_type,
            ticket: event["subject"].as_str().unwrap_or_default(),
            origin: format!(
                "journal {} {}",
                message["journal_seq"],
                message["email"]["mailbox"].as_str().unwrap_or_default()
            ),
        });
    }
    for (&(channel, external_id), events) in &by_input {
        if !evidence
            .ledger
            .entries
            .contains_key(&(channel_name(channel), external_id.to_owned()))
        {
            verdict.invented += 1;
            push_example(verdict, format!("invented: {channel} {external_id}"));
        }
        if events.len() > 1 {
            verdict.duplicated += 1;
            push_example(
                verdict,
                format!(
                    "duplicated: {channel} {external_id} ({} events)",
                    events.len()
                ),
            );
        }
    }
    for ((channel, external_id), entry) in &evidence.ledger.entries {
        if entry.acked && !by_input.contains_key(&(*channel, external_id.as_str())) {
            verdict.lost += 1;
            push_example(verdict, format!("lost: {channel} {external_id}"));
        }
    }
    by_input
}

/// The ledger's channel name for a channel id from an event (`""` when unknown).
fn channel_name(channel: &str) -> &'static str {
    Kind::ALL
        .into_iter()
        .map(Kind::channel)
        .find(|name| *name == channel)
        .unwrap_or("")
}

/// Keeps the first few examples of each broken rule.
fn push_example(verdict: &mut Verdict, problem: String) {
    if verdict.problems.len() < 40 {
        verdict.problems.push(problem);
    }
}

/// Each thread opened exactly one ticket, with its first message; its other messages were
/// added to that ticket.
fn threads(
    ledger: &Ledger,
    messages: &HashMap<(&str, &str), Vec<MessageEvent<'_>>>,
    verdict: &mut Verdict,
) {
    let mut by_thread: BTreeMap<&str, Vec<(&Entry, &MessageEvent)>> = BTreeMap::new();
    for ((channel, external_id), entry) in &ledger.entries {
        if let Some(events) = messages.get(&(*channel, external_id.as_str())) {
            by_thread
                .entry(entry.thread.as_str())
                .or_default()
                .extend(events.iter().map(|event| (entry, event)));
        }
    }
    let first_acked: HashSet<&str> = ledger
        .entries
        .values()
        .filter(|e| e.position == 0 && e.acked)
        .map(|e| e.thread.as_str())
        .collect();
    let mut wrong = 0;
    for (thread, mut events) in by_thread {
        events.sort_by_key(|(_, event)| event.seq);
        let (opener, first) = events[0];
        let tickets: HashSet<&str> = events.iter().map(|(_, e)| e.ticket).collect();
        let created = events
            .iter()
            .filter(|(_, e)| e.event_type == "deskgate.ticket.created")
            .count();
        let opened_by_first = opener.position == 0 || !first_acked.contains(thread);
        if tickets.len() != 1
            || created != 1
            || first.event_type != "deskgate.ticket.created"
            || !opened_by_first
        {
            wrong += 1;
            let trail: Vec<String> = events
                .iter()
                .map(|(entry, event)| {
                    format!(
                        "message {} at {} {} ({})",
                        entry.position, event.seq, event.event_type, event.origin
                    )
                })
                .collect();
            push_example(
                verdict,
                format!(
                    "thread {thread}: {} tickets, {created} ticket.created, opened by message {} of the thread ({})",
                    tickets.len(),
                    opener.position,
                    trail.join(", ")
                ),
            );
        }
    }
    if wrong > 0 {
        verdict.problems.push(format!(
            "{wrong} threads did not get exactly one ticket, opened by their first message"
        ));
    }
}

/// The stream holds exactly the outbox's events, each once, under its ticket's (or contact's)
/// and type's subject, in order per ticket or contact.
fn stream(evidence: &Evidence<'_>, verdict: &mut Verdict) {
    let mut seen = HashSet::new();
    let mut repeated = 0;
    let mut last_of_subject: HashMap<&str, u64> = HashMap::new();
    let mut misordered = 0;
    for (id, subject, event) in evidence.stream {
        if !seen.insert(id.as_str()) {
            repeated += 1;
        }
        // `<prefix>.<ticket or contact id>.<type without "deskgate.">`; the ids here are UUIDs
        // and `journal/<seq>`, which need none of the sink's token escaping.
        let expected = format!(
            "{SUBJECT_PREFIX}.{}.{}",
            event["subject"].as_str().unwrap_or_default(),
            event["type"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("deskgate.")
        );
        if event["id"].as_str() != Some(id.as_str()) || *subject != expected {
            push_example(
                verdict,
                format!("stream message {id} on {subject} is not its event"),
            );
        }
        let seq = seq_of(event);
        let about = event["subject"].as_str().unwrap_or_default();
        if last_of_subject
            .insert(about, seq)
            .is_some_and(|before| before >= seq)
        {
            misordered += 1;
        }
    }
    let outbox: HashSet<&str> = evidence
        .events
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    let missing = outbox.difference(&seen).count();
    let extra = seen.difference(&outbox).count();
    if repeated + missing + extra + misordered > 0 {
        verdict.problems.push(format!(
            "JetStream: {repeated} ids twice, {missing} events missing, {extra} not in the outbox, {misordered} out of order per subject"
        ));
    }
    verdict.notes.push(format!(
        "stream={} stream_duplicates={repeated}",
        evidence.stream.len()
    ));
}

/// Every ticket opened on an acknowledged channel got one outcome, `sent`, and its mail
/// arrived; no mail arrived for anything else. A mail accepted just before a kill is sent again
/// after the restart (SMTP cannot deduplicate): counted, not a failure.
fn acknowledgements(evidence: &Evidence<'_>, verdict: &mut Verdict) {
    let mut outcomes: HashMap<&str, Vec<&Value>> = HashMap::new();
    for event in evidence.events {
        if OUTCOMES.contains(&event["type"].as_str().unwrap_or_default()) {
            let ticket = event["data"]["ticket_id"].as_str().unwrap_or_default();
            outcomes.entry(ticket).or_default().push(event);
        }
    }
    let mut sent_ids = HashSet::new();
    let (mut tickets, mut wrong) = (0, 0);
    for event in evidence.events {
        let channel = event["data"]["message"]["channel"]
            .as_str()
            .unwrap_or_default();
        if event["type"] != "deskgate.ticket.created" || !ACKNOWLEDGED.contains(&channel) {
            continue;
        }
        tickets += 1;
        let ticket = event["subject"].as_str().unwrap_or_default();
        match outcomes.get(ticket).map(Vec::as_slice) {
            Some([outcome]) if outcome["type"] == "deskgate.outbound.sent" => {
                sent_ids.insert(format!(
                    "<{}>",
                    outcome["data"]["message_id"].as_str().unwrap_or_default()
                ));
            }
            other => {
                wrong += 1;
                push_example(
                    verdict,
                    format!("ticket {ticket}: acknowledgement outcomes {other:?}"),
                );
            }
        }
    }
    let mut received: HashMap<String, usize> = HashMap::new();
    for mail in evidence.mails {
        *received.entry(message_id(mail)).or_default() += 1;
    }
    let never_arrived = sent_ids
        .iter()
        .filter(|id| !received.contains_key(*id))
        .count();
    let unasked = received.keys().filter(|id| !sent_ids.contains(*id)).count();
    let resent: usize = received.values().map(|n| n - 1).sum();
    verdict.invented += unasked;
    if wrong + never_arrived > 0 {
        verdict.problems.push(format!(
            "acknowledgements: {wrong} tickets without exactly one `sent`, {never_arrived} sent but never received"
        ));
    }
    verdict.notes.push(format!(
        "acknowledged_tickets={tickets} mails_received={} resent_after_kill={resent} unasked={unasked}",
        evidence.mails.len()
    ));
}

/// The Message-ID header of a raw mail, with its angle brackets.
fn message_id(mail: &[u8]) -> String {
    let text = String::from_utf8_lossy(mail);
    text.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}
