//! The processor: applies journaled records in order and commits their effects atomically with
//! its cursor.
//!
//! One step reads a run of durable journal records, applies each to a [`StateBatch`]
//! (contacts, conversations, tickets, outbox events), writes the new cursor into the same batch
//! and commits it (`step.rs`; while records wait, on a second thread as the next step is
//! applied: `pipeline.rs`); readers see the step's events only once a sync covers it
//! (`run.rs`). A crash or power cut before that replays the step from the journal; ids and
//! event times derive from the journal, so the replay produces exactly what the lost step
//! would have.
//!
//! A record that cannot be applied (undecodable, or inconsistent with state) is rolled back on
//! its own, recorded in quarantine with its reason and a `deskgate.inbound.quarantined` event,
//! and the records behind it go on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::ActionKind;
use crate::contacts;
use crate::conversations;
use crate::events::data::{EventData, InboundQuarantined};
use crate::events::{EventDraft, EventType, OutboxWriter};
use crate::ids::Minter;
use crate::live::{Live, LiveHandle};
use crate::model::{AutomaticKind, AutomaticRequest, Inbound, Position, Quarantined, Record};
use crate::outbound::{self, Planner};
use crate::routing::RuleSet;
use crate::store::{keys, Blobs, StateBatch, Store, StoreError, WriteGate};
use crate::tickets::{self, Followups, RequestedAction};

mod consent;
mod message;
mod pipeline;
mod replay;
mod retry;
mod run;
mod step;

use step::Committed;

use consent::Gate;
use retry::unknown_owner;
pub use run::start;

pub struct Processor {
    store: Store,
    minter: Minter,
    outbox: OutboxWriter,
    batch_size: usize,
    /// Routing rules, pipelines, the directory's base and the sending plan, compiled from
    /// config and replaced by a reload; read once per step.
    live: LiveHandle,
    /// Where attachments live, so that erasure can delete them.
    blobs: Option<Blobs>,
    /// Held for each whole step, so that a backup copies steps whole.
    gate: WriteGate,
    /// Whether an erasure may wait for its journal redaction ([`Processor::after_durable`]):
    /// true at start-up, for one a crash interrupted.
    erasing: AtomicBool,
}

/// Why a journal record could not be applied. Every one but a storage failure sets the record
/// aside (quarantine, with this as its reason); a storage failure retries the whole step.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    /// The record does not decode (written by a newer version, or damaged).
    #[error("{0}")]
    Undecodable(StoreError),
    /// Applying it failed: the state it needs is missing or inconsistent, or the database
    /// failed.
    #[error("{0}")]
    Store(StoreError),
    /// Applying it panicked: a bug, never the input's due, and it must not stop the records
    /// behind it.
    #[error("processing panicked: {0}")]
    Panicked(String),
}

/// Records set aside, by channel.
const QUARANTINED: &str = "deskgate_quarantined_total";

impl Processor {
    pub fn new(store: Store, minter: Minter, outbox: OutboxWriter, batch_size: usize) -> Self {
        Processor {
            store,
            minter,
            outbox,
            batch_size,
            live: LiveHandle::new(Live::empty()),
            blobs: None,
            gate: WriteGate::default(),
            erasing: AtomicBool::new(true),
        }
    }

    /// Shares the gate a backup holds while it copies the state tree.
    pub fn with_gate(mut self, gate: WriteGate) -> Self {
        self.gate = gate;
        self
    }

    /// Lets erasure delete the attachments of an erased contact's messages.
    pub fn with_blobs(mut self, blobs: Blobs) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Redacts the journal for erasures already committed (see [`contacts::erase`]).
    fn finish_erasures(&self) -> Result<(), StoreError> {
        contacts::erase::finish_pending(&self.store, self.blobs.as_ref()).map(|_| ())
    }

    /// Reads its rules and sending plan from `live` at the start of every step (by default
    /// it routes nothing, has no pipelines, and refuses every send as unrouted).
    pub fn with_live(mut self, live: LiveHandle) -> Self {
        self.live = live;
        self
    }

    /// Uses this sending configuration, keeping the rules.
    pub fn with_outbound(self, planner: Arc<Planner>) -> Self {
        let mut live = (*self.live.current()).clone();
        live.planner = planner;
        self.with_live(LiveHandle::new(live))
    }

    /// Uses these routing rules, keeping the sending configuration.
    pub fn with_routing(self, rules: Arc<RuleSet>) -> Self {
        let mut live = (*self.live.current()).clone();
        live.rules = rules;
        self.with_live(LiveHandle::new(live))
    }

    fn outbound_ctx<'s>(&'s self, live: &'s Live) -> outbound::apply::Ctx<'s> {
        outbound::apply::Ctx {
            planner: &live.planner,
            rules: &live.rules,
            outbox: &self.outbox,
            minter: &self.minter,
        }
    }

    fn apply(
        &self,
        live: &Live,
        batch: &mut StateBatch<'_>,
        seq: u64,
        record: &Record,
    ) -> Result<(), StoreError> {
        match record {
            Record::Inbound(inbound) => {
                tickets::forget_closed(&live.rules, batch, &self.minter, inbound.received_at)?;
                self.apply_inbound(live, batch, seq, inbound)?;
                mark_retried(batch, seq, inbound)
            }
            Record::Quarantine(input) => self.quarantine(batch, seq, Some(record), &input.reason),
            Record::Contact(control) => {
                if let Some(refused) = unknown_owner(&live.rules, batch, &control.command)? {
                    batch.put(keys::control_outcome(seq), &refused);
                    return Ok(());
                }
                let announce = contacts::announce::Announcer {
                    outbox: &self.outbox,
                    at: control.received_at,
                    channel: None,
                };
                let applied = contacts::control::apply(batch, &announce, seq, &control.command)?;
                if let Some(erased) = applied.erased {
                    self.erasing.store(true, Ordering::Release);
                    let requests = outbound::consent::request_conversation(&erased.contact_id);
                    let forget = [erased.conversations.as_slice(), &[requests]].concat();
                    outbound::erase::forget_conversations(batch, &forget)?;
                }
                Ok(())
            }
            Record::SinkDeadLettered(dead) => {
                crate::events::notices::apply_dead_lettered(&self.outbox, batch, dead)
            }
            Record::SinkDisabled(disabled) => {
                crate::events::notices::apply_disabled(&self.outbox, batch, disabled)
            }
            Record::Control(control) => {
                if let crate::model::ControlCommand::RetryQuarantined { seq: entry } =
                    control.command
                {
                    return self.retry_quarantined(live, batch, seq, entry);
                }
                let (minter, outbox) = (&self.minter, &self.outbox);
                tickets::forget_closed(&live.rules, batch, minter, control.at)?;
                let followups =
                    tickets::apply_control(&live.rules, batch, minter, outbox, seq, control)?;
                let ctx = self.outbound_ctx(live);
                Self::follow_up(&ctx, batch, (seq, control.at), &followups)
            }
            Record::Event(event) => crate::delivery::apply(batch, &self.outbox, seq, event),
            Record::Outbound(outbound) => {
                let ctx = self.outbound_ctx(live);
                let Some(replied) = outbound::apply::apply(&ctx, batch, seq, outbound)? else {
                    return Ok(());
                };
                let at = outbound::record_time(outbound);
                let effect = tickets::agent_replied(
                    &live.rules,
                    batch,
                    (&self.minter, &self.outbox),
                    at,
                    &replied.conversation_id,
                )?;
                Self::follow_up(&ctx, batch, (seq, at), &effect.followups)
            }
        }
    }

    fn apply_inbound(
        &self,
        live: &Live,
        batch: &mut StateBatch<'_>,
        seq: u64,
        inbound: &Inbound,
    ) -> Result<(), StoreError> {
        let at = inbound.received_at;
        let resolution = contacts::resolve(batch, &self.minter, &inbound.sender, at)?;
        let announce = self.announcer(inbound);
        announce.resolution(batch, &resolution)?;
        let mut contact = resolution.contact;
        match self.consent_gate(live, batch, (seq, inbound), &mut contact)? {
            Gate::Pass { notice } => self.admit(live, batch, (seq, inbound), &contact.id, notice),
            Gate::Held => Ok(()),
            Gate::Agreed(held) => held.iter().try_for_each(|(held_seq, held)| {
                self.admit(live, batch, (*held_seq, held), &contact.id, false)
            }),
        }
    }

    fn announcer(&self, inbound: &Inbound) -> contacts::announce::Announcer<'_> {
        contacts::announce::Announcer {
            outbox: &self.outbox,
            at: inbound.received_at,
            channel: Some(inbound.channel.clone()),
        }
    }

    /// Threads a message whose sender may be heard (consent given where a channel asks for
    /// it) and applies everything it leads to; `notice`: send the channel's consent text first.
    fn admit(
        &self,
        live: &Live,
        batch: &mut StateBatch<'_>,
        (seq, inbound): (u64, &Inbound),
        contact_id: &str,
        notice: bool,
    ) -> Result<(), StoreError> {
        let at = inbound.received_at;
        let channel = Some(inbound.channel.clone());
        let announce = self.announcer(inbound);
        let tag = &live.planner.ticket_tag;
        let mut threaded = conversations::thread(batch, &self.minter, inbound, contact_id, tag)?;
        let mailboxes = &live.planner.mailboxes;
        let own = |a: &str| {
            mailboxes
                .values()
                .any(|m| m.address.eq_ignore_ascii_case(a))
        };
        let copied = contacts::participants::Copied {
            minter: &self.minter,
            announce: &announce,
        };
        copied.add(batch, inbound, &own, &mut threaded.ticket)?;
        contacts::index_message(
            batch,
            &threaded.conversation.contact_id,
            &threaded.conversation.id,
            seq,
        )?;
        conversations::split::remember(batch, &threaded.conversation.id, seq, inbound);
        // History by age or by how it arrived (a mailbox's first sync); the age, when both.
        let history = live
            .rules
            .history(inbound.sent_at, inbound.received_at)
            .or_else(|| inbound.imported.clone());
        let routed = tickets::after_threading(
            &live.rules,
            batch,
            &self.minter,
            inbound,
            (&mut threaded, history.is_some()),
        )?;
        let (event_type, subject) = routed.message_event(&threaded);
        let data = self.message_data(seq, inbound, &threaded, &routed, history.as_ref());
        if history.is_some() {
            batch.count(
                "deskgate_history_messages_total",
                &[("channel", &inbound.channel)],
                1,
            );
        }
        let data = match event_type {
            EventType::TicketCreated => EventData::TicketCreated(data),
            EventType::ConversationMessageAdded => EventData::ConversationMessageAdded(data),
            _ => EventData::TicketMessageAdded(data),
        };
        let draft = EventDraft::new(subject, channel.as_deref(), data);
        self.outbox.push(batch, at, &draft)?;
        let message_id = self.minter.message_id(seq);
        if let Some(merge) = conversations::email::merge_suggestion(&threaded, inbound, &message_id)
        {
            self.outbox.push(batch, at, &merge)?;
        }
        tickets::push_events(&self.outbox, batch, at, &routed.events)?;
        let ctx = self.outbound_ctx(live);
        // History and a flagged spam sender's messages start no automatic send.
        let quiet = history.is_some() || routed.spam;
        if notice && !quiet {
            let target = outbound::consent::Target {
                conversation_id: &threaded.conversation.id,
                ticket_id: &threaded.ticket.id,
            };
            outbound::consent::queue(&ctx, batch, (seq, inbound), target, false)?;
        }
        outbound::observe::inbound(&ctx, batch, (seq, quiet), inbound, &threaded)?;
        let origin = (seq, inbound.received_at);
        Self::follow_up(&ctx, batch, origin, &routed.followups)
    }

    /// Carries out what a tickets step left for outbound, in the same step so that it happens
    /// exactly once: its status-reached actions, then the transcripts of the chat
    /// conversations it closed.
    fn follow_up(
        ctx: &outbound::apply::Ctx<'_>,
        batch: &mut StateBatch<'_>,
        origin: (u64, DateTime<Utc>),
        followups: &Followups,
    ) -> Result<(), StoreError> {
        Self::request_actions(ctx, batch, origin, &followups.actions)?;
        for conversation in &followups.closed {
            outbound::transcript::conversation_closed(ctx, batch, origin, conversation)?;
        }
        Ok(())
    }

    /// Turns the status-reached actions a message or a control command led to (acknowledge
    /// the customer, notify agents) into automatic-mail requests in the same step, so they are
    /// sent exactly once. The outbound policy still applies: no mail to automatic senders,
    /// machine addresses or suppressed addresses, and the per-recipient caps.
    fn request_actions(
        ctx: &outbound::apply::Ctx<'_>,
        batch: &mut StateBatch<'_>,
        (seq, at): (u64, DateTime<Utc>),
        actions: &[RequestedAction],
    ) -> Result<(), StoreError> {
        for (i, action) in actions.iter().enumerate() {
            let kind = match action.action {
                ActionKind::Acknowledge => AutomaticKind::Acknowledgement,
                ActionKind::Notify => AutomaticKind::Notification,
            };
            // One acknowledgement per ticket, to the customer's first address.
            let take = match kind {
                AutomaticKind::Acknowledgement => 1,
                AutomaticKind::Notification => action.recipients.len(),
            };
            for (j, email) in action.recipients.iter().take(take).enumerate() {
                let request = AutomaticRequest {
                    idempotency_key: format!("action:{seq}:{i}:{j}"),
                    kind,
                    template: action.template.clone(),
                    conversation_id: action.conversation_id.clone(),
                    to: Some(email.clone()),
                    fields: action.fields.clone(),
                    requested_at: at,
                };
                let (ticket, channel) = (&action.ticket_id, &action.channel);
                outbound::automatic::request_promised(ctx, batch, seq, &request, ticket, channel)?;
            }
        }
        Ok(())
    }

    fn quarantine(
        &self,
        batch: &mut StateBatch<'_>,
        seq: u64,
        record: Option<&Record>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let channel = record.map(|r| r.channel().to_owned());
        tracing::warn!(
            journal_seq = seq,
            channel = channel.as_deref().unwrap_or("?"),
            reason,
            "record quarantined"
        );
        let (at, external_id, raw_blob) = match record {
            Some(Record::Inbound(inbound)) => {
                (inbound.received_at, Some(inbound.external_id.clone()), None)
            }
            Some(Record::Quarantine(input)) => (
                input.received_at,
                Some(input.external_id.clone()),
                input.raw_blob.clone(),
            ),
            Some(Record::SinkDeadLettered(dead)) => (dead.at, None, None),
            Some(Record::SinkDisabled(disabled)) => (disabled.at, None, None),
            Some(Record::Control(control)) => (control.at, Some(control.key.clone()), None),
            Some(Record::Event(event)) => {
                (event.received_at, Some(event.external_id.clone()), None)
            }
            Some(Record::Outbound(outbound)) => (
                outbound::record_time(outbound),
                Some(outbound.dedupe_key().external_id),
                None,
            ),
            Some(Record::Contact(control)) => {
                (control.received_at, Some(control.key.clone()), None)
            }
            // An undecodable record has no time of its own; the replay must still be identical,
            // so use a fixed one rather than the clock.
            None => (DateTime::<Utc>::UNIX_EPOCH, None, None),
        };
        let entry = Quarantined {
            journal_seq: seq,
            channel: channel.clone(),
            external_id,
            reason: reason.to_owned(),
            raw_blob,
            at,
            retried_as: None,
        };
        batch.put(keys::quarantine(seq), &entry);
        let data = InboundQuarantined {
            journal_seq: seq,
            external_id: entry.external_id.clone(),
            reason: reason.to_owned(),
            raw_blob: entry.raw_blob.clone(),
        };
        let draft = EventDraft::new(
            format!("journal/{seq}"),
            channel.as_deref(),
            EventData::InboundQuarantined(data),
        );
        self.outbox.push(batch, at, &draft)?;
        Ok(())
    }
}

/// A message that a quarantine retry produced names its entry (`extra.quarantine_retry_of`):
/// the entry records the message's seq, so listings show it was retried.
fn mark_retried(batch: &mut StateBatch<'_>, seq: u64, inbound: &Inbound) -> Result<(), StoreError> {
    let Some(entry_seq) = inbound
        .extra
        .get("quarantine_retry_of")
        .and_then(|v| v.as_u64())
    else {
        return Ok(());
    };
    let key = keys::quarantine(entry_seq);
    if let Some(mut entry) = batch.get::<Quarantined>(&key)? {
        entry.retried_as = Some(seq);
        batch.put(key, &entry);
    }
    Ok(())
}
