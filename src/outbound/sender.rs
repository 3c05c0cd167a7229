//! The sender task: delivers pending outgoing items and journals what became of them.
//!
//! It reads the pending index the processor maintains, and for each item journals
//! `attempting`, hands the message to SMTP or the Graph API, then journals `sent` or `failed`
//! (or `capped` for automatic mail over a recipient's hourly cap). The processor applies those
//! records like any other, so outcome events are sequenced with everything else, and an item
//! leaves the pending index only once its outcome is durable and applied. Transient failures
//! retry with jittered exponential backoff; backoff state lives in memory (a restart retries
//! at once).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::Utc;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::graph::Graph;
use super::smtp::Smtp;
use super::{ItemStatus, OutgoingItem, Payload};
use crate::backoff::Backoff;
use crate::config::OutboundConfig;
use crate::journal::{Appended, JournalError, JournalHandle};
use crate::model::Position;
use crate::model::{OutboundOutcome, OutboundRecord, Record, SendResult};
use crate::store::{keys, Blobs, Store};

/// Why a send did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// May pass by itself (a deferral, an outage, a rate limit): retry with backoff.
    Transient(String),
    /// The server refused (SMTP 5xx): retried up to `permanent_attempts` times in all.
    /// `recipient_unknown` when it said the mailbox does not exist (5.1.x).
    Refused {
        error: String,
        recipient_unknown: bool,
    },
    /// Can never succeed (a closed messaging window, a malformed message): failed at once.
    Permanent(String),
}

/// Retry bounds from `[outbound]`.
struct Retry {
    backoff: Backoff,
    give_up_after: chrono::Duration,
    permanent_attempts: u32,
}

/// Items of one lane in flight at once (each on a different conversation).
const LANE_IN_FLIGHT: usize = 8;

/// What became of one attempt.
enum Attempted {
    /// No final outcome yet: retry after a backoff. `attempt` is the count to remember;
    /// `refused` when the server refused it (counted towards `permanent_attempts`).
    Retry { attempt: u32, refused: bool },
    /// A final outcome, and what journaling it gave.
    Final(OutboundOutcome, Result<Appended, JournalError>),
}

/// What the sender remembers between passes, per lane.
#[derive(Default)]
struct Tracking {
    /// Items whose final outcome is journaled at this seq but not yet applied.
    awaiting: HashMap<String, u64>,
    /// Final outcomes the journal did not take yet: journal them before anything else, never
    /// send those items again.
    unrecorded: HashMap<String, OutboundOutcome>,
    /// When an item may be tried again, and how many times it failed in this process.
    next_due: HashMap<String, Instant>,
    failures: HashMap<String, u32>,
    refusals: HashMap<String, u32>,
    attempts: HashMap<String, u32>,
}

pub struct Sender {
    store: Store,
    journal: JournalHandle,
    position: watch::Receiver<Position>,
    smtp: Smtp,
    graph: Graph,
    caps: DefaultKeyedRateLimiter<String>,
    retry: Retry,
    shutdown: CancellationToken,
}

impl Sender {
    /// Builds the transports; fails when a credential file cannot be read.
    pub fn new(
        config: &OutboundConfig,
        store: Store,
        blobs: Blobs,
        journal: JournalHandle,
        position: watch::Receiver<Position>,
        shutdown: CancellationToken,
    ) -> Result<Sender, String> {
        let per_hour = NonZeroU32::new(config.auto_mail_per_recipient_per_hour)
            .ok_or("outbound.auto_mail_per_recipient_per_hour: must be > 0")?;
        Ok(Sender {
            smtp: Smtp::new(&config.mailboxes, blobs)?,
            graph: Graph::new(config)?,
            caps: RateLimiter::keyed(Quota::per_hour(per_hour)),
            retry: Retry {
                backoff: Backoff::new(
                    Duration::from_millis(config.retry_base_ms),
                    Duration::from_secs(config.retry_max_secs.max(1)),
                ),
                give_up_after: chrono::Duration::seconds(
                    i64::try_from(config.give_up_after_secs).unwrap_or(i64::MAX / 1000),
                ),
                permanent_attempts: config.permanent_attempts,
            },
            store,
            journal,
            position,
            shutdown,
        })
    }

    /// Delivers until shutdown. Drop order matters: this task holds a journal handle, so the
    /// app waits for it before it waits for the journal writer.
    pub async fn run(mut self) {
        // Items whose outcome was journaled before a restart must not be sent again: wait until
        // the processor has applied everything journaled before this start.
        let start = *self.journal.durable().borrow();
        let caught_up = self.position.wait_for(|p| p.cursor >= start);
        tokio::select! {
            _ = caught_up => {}
            () = self.shutdown.cancelled() => return,
        }
        let mut lanes = HashMap::new();
        loop {
            let wait = self.pass(&mut lanes).await;
            self.caps.retain_recent();
            self.caps.shrink_to_fit();
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                changed = self.position.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::debug!("outbound sender stopped");
    }

    /// Tries every pending item that is due; returns how long until the next one is. Each
    /// transport (a mailbox, a Graph channel) is a lane of its own, so a slow SMTP server does
    /// not hold back Messenger replies; inside a lane items go one at a time, in queue order.
    async fn pass(&self, lanes: &mut HashMap<String, Tracking>) -> Duration {
        let cursor = self.position.borrow().cursor;
        for tracking in lanes.values_mut() {
            tracking.awaiting.retain(|_, seq| *seq > cursor);
        }
        let pending = match self
            .store
            .state_scan::<String>(keys::OUTGOING_PENDING, None, 100_000)
        {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(%error, "reading pending outgoing messages failed");
                return Duration::from_secs(5);
            }
        };
        let mut by_lane: HashMap<String, Vec<OutgoingItem>> = HashMap::new();
        for (_, id) in pending {
            match self.store.state_get::<OutgoingItem>(&keys::outgoing(&id)) {
                Ok(Some(item)) => by_lane.entry(lane(&item)).or_default().push(item),
                Ok(None) => tracing::error!(item = %id, "pending outgoing message is missing"),
                Err(error) => {
                    tracing::error!(%error, item = %id, "reading outgoing message failed")
                }
            }
        }
        let runs = by_lane.into_iter().map(|(name, items)| {
            let mut tracking = lanes.remove(&name).unwrap_or_default();
            async move {
                let next = self.lane_pass(&mut tracking, items).await;
                (name, tracking, next)
            }
        });
        let mut next = Duration::from_secs(30);
        for (name, tracking, lane_next) in futures::future::join_all(runs).await {
            lanes.insert(name, tracking);
            next = next.min(lane_next);
        }
        next.max(Duration::from_millis(10))
    }

    /// One lane's pending items, in queue order. Messages on one conversation leave in order:
    /// a pass sends at most the first pending item of each conversation, and while that item
    /// waits for a retry the ones queued after it wait too. Up to [`LANE_IN_FLIGHT`] items of
    /// different conversations go at once, so their journal writes share one fdatasync (two
    /// per item, one at a time, held a lane to a few dozen messages a second on a slow disk).
    async fn lane_pass(&self, tracking: &mut Tracking, items: Vec<OutgoingItem>) -> Duration {
        let mut next = Duration::from_secs(30);
        let mut conversations = HashSet::new();
        let mut due = Vec::new();
        for item in items {
            if due.len() == LANE_IN_FLIGHT || self.shutdown.is_cancelled() {
                // The rest go in the next pass, which the outcomes of these start.
                break;
            }
            let id = item.id.clone();
            if tracking.awaiting.contains_key(&id) {
                continue;
            }
            if let Some(outcome) = tracking.unrecorded.remove(&id) {
                self.record(tracking, outcome).await;
                continue;
            }
            if !conversations.insert(item.conversation_id.clone()) {
                continue;
            }
            match tracking.next_due.get(&id) {
                Some(at) if *at > Instant::now() => {
                    next = next.min(at.saturating_duration_since(Instant::now()));
                }
                _ => due.push(item),
            }
        }
        let attempts = due.into_iter().map(|item| {
            let known = tracking.attempts.get(&item.id).copied().unwrap_or(0);
            let refusals = tracking.refusals.get(&item.id).copied().unwrap_or(0);
            self.attempt(item, known, refusals)
        });
        for (id, attempted) in futures::future::join_all(attempts).await {
            match attempted {
                Attempted::Retry { attempt, refused } => {
                    tracking.attempts.insert(id.clone(), attempt);
                    if refused {
                        *tracking.refusals.entry(id.clone()).or_default() += 1;
                    }
                    self.back_off(tracking, &id);
                    if let Some(at) = tracking.next_due.get(&id) {
                        next = next.min(at.saturating_duration_since(Instant::now()));
                    }
                }
                Attempted::Final(outcome, journaled) => {
                    self.recorded(tracking, outcome, journaled);
                }
            }
        }
        next
    }

    /// One attempt at one item: journals `attempting`, sends, and journals the final outcome
    /// when there is one. `known` attempts and `refusals` are this process's count so far.
    async fn attempt(&self, item: OutgoingItem, known: u32, refusals: u32) -> (String, Attempted) {
        let attempt = item.attempts.max(known) + 1;
        let id = item.id.clone();
        let outcome = |result| OutboundOutcome {
            item_id: item.id.clone(),
            attempt,
            result,
            at: Utc::now(),
        };
        let finish = |result| async {
            let outcome = outcome(result);
            let journaled = self.journal.append(outbound_record(outcome.clone())).await;
            Attempted::Final(outcome, journaled)
        };
        if known == 0 && item.status == ItemStatus::Sending {
            metrics::counter!("deskgate_outbound_resent_after_crash_total").increment(1);
            tracing::warn!(item = %item.id, "an attempt before the restart has no outcome; it may have been delivered, sending again");
        }
        if item.purpose.is_capped() && known == 0 && item.attempts == 0 {
            if let Err(not_until) = self.caps.check_key(&item.recipient().to_owned()) {
                let _ = not_until;
                let reason = format!(
                    "{} has had its cap of automatic mail for this hour",
                    item.recipient()
                );
                return (id, finish(SendResult::Capped { reason }).await);
            }
        }
        let attempting = outcome(SendResult::Attempting);
        if let Err(error) = self.journal.append(outbound_record(attempting)).await {
            tracing::warn!(%error, item = %item.id, "could not journal the attempt; will retry");
            return (
                id,
                Attempted::Retry {
                    attempt,
                    refused: false,
                },
            );
        }
        let sent = match &item.payload {
            Payload::Email(mail) => self.smtp.send(mail).await,
            other => self.graph.send(other).await,
        };
        let via = via(&item.payload);
        let final_result = self.judge(&item, sent, attempt, refusals);
        match final_result {
            Ok(result) => {
                metrics::counter!("deskgate_outbound_total", "via" => via, "outcome" => result.name())
                    .increment(1);
                (id, finish(result).await)
            }
            Err(refused) => (id, Attempted::Retry { attempt, refused }),
        }
    }

    /// What a send's result means for the item: a final outcome, or `Err(refused)` to retry
    /// (`refused` when the server refused it, which counts toward `permanent_attempts`).
    fn judge(
        &self,
        item: &OutgoingItem,
        sent: Result<String, Failure>,
        attempt: u32,
        refusals: u32,
    ) -> Result<SendResult, bool> {
        match sent {
            Ok(provider_id) => Ok(SendResult::Sent { provider_id }),
            Err(Failure::Permanent(error)) => Ok(SendResult::Failed {
                error,
                recipient_unknown: false,
            }),
            Err(Failure::Refused {
                error,
                recipient_unknown,
            }) => {
                tracing::warn!(item = %item.id, %error, attempt, "the server refused the message");
                if refusals + 1 >= self.retry.permanent_attempts {
                    Ok(SendResult::Failed {
                        error,
                        recipient_unknown,
                    })
                } else {
                    Err(true)
                }
            }
            Err(Failure::Transient(error)) => {
                let age = Utc::now() - item.created_at;
                tracing::warn!(item = %item.id, %error, attempt, "send failed; will retry");
                if age > self.retry.give_up_after {
                    Ok(SendResult::Failed {
                        error: format!("gave up after {attempt} attempts: {error}"),
                        recipient_unknown: false,
                    })
                } else {
                    Err(false)
                }
            }
        }
    }

    fn back_off(&self, tracking: &mut Tracking, id: &str) {
        let failures = tracking.failures.entry(id.to_owned()).or_default();
        *failures += 1;
        let delay = self.retry.backoff.delay(*failures);
        tracking
            .next_due
            .insert(id.to_owned(), Instant::now() + delay);
    }

    /// Journals a final outcome; until the processor applies it the item is left alone.
    async fn record(&self, tracking: &mut Tracking, outcome: OutboundOutcome) {
        let journaled = self.journal.append(outbound_record(outcome.clone())).await;
        self.recorded(tracking, outcome, journaled);
    }

    /// Remembers what journaling a final outcome gave: the item waits for the processor to
    /// apply it, or, when the journal did not take it, for it to be journaled again.
    fn recorded(
        &self,
        tracking: &mut Tracking,
        outcome: OutboundOutcome,
        journaled: Result<Appended, JournalError>,
    ) {
        let id = outcome.item_id.clone();
        match journaled {
            Ok(Appended::New { seq } | Appended::Duplicate { seq }) => {
                tracking.awaiting.insert(id.clone(), seq);
                tracking.next_due.remove(&id);
                tracking.failures.remove(&id);
                tracking.refusals.remove(&id);
                tracking.attempts.remove(&id);
            }
            Err(error) => {
                tracing::warn!(%error, item = %id, "could not journal the outcome; will retry");
                tracking.unrecorded.insert(id, outcome);
            }
        }
    }
}

/// The transport an item goes out through.
fn lane(item: &OutgoingItem) -> String {
    match &item.payload {
        Payload::Email(mail) => format!("mail/{}", mail.mailbox),
        Payload::Messenger { channel, .. } | Payload::Whatsapp { channel, .. } => {
            format!("graph/{channel}")
        }
    }
}

fn outbound_record(outcome: OutboundOutcome) -> Record {
    Record::Outbound(Box::new(OutboundRecord::Outcome(outcome)))
}

/// The `via` label of a send's metrics.
fn via(payload: &Payload) -> &'static str {
    match payload {
        Payload::Email(_) => "email",
        Payload::Messenger { .. } => "messenger",
        Payload::Whatsapp { .. } => "whatsapp",
    }
}
