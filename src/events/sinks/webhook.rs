//! The webhook sink: POSTs each event as CloudEvents JSON with Standard Webhooks signatures,
//! one at a time and in order.
//!
//! Headers: `webhook-id` (the event id, the same on every attempt), `webhook-timestamp` (unix
//! seconds of the attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256>` of
//! `id.timestamp.body`, one per configured secret, space-separated). A 2xx answer moves on;
//! anything else, or no answer within the timeout, is retried after the next delay of
//! `retry_schedule_secs` (the Standard Webhooks example spans more than a day), or later when
//! the answer carries `Retry-After`; after the last retry the event becomes a dead letter and
//! the sink moves on.
//!
//! `410 Gone` means the endpoint is gone for good: the sink disables itself (stored, so a
//! restart keeps it disabled), announces `deskgate.sink.disabled`, shows on `/readyz`, and
//! delivers nothing until `POST /v1/control/sinks/{name}/enable`, when it starts again with the
//! refused event.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use super::backoff;
use super::dead_letter::DeadLetter;
use super::feed::{Feed, OutEvent};
use crate::config::sinks::WebhookSinkConfig;
use crate::events::EventType;
use crate::journal::JournalHandle;
use crate::model::{Record, SinkDisabled};

type HmacSha256 = Hmac<Sha256>;

/// `webhook-signature` for one request: a `v1,` signature per secret.
pub fn sign(secrets: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    let signatures: Vec<String> = secrets
        .iter()
        .map(|key| {
            // HMAC takes keys of any length.
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            let tag = mac.finalize().into_bytes();
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(tag)
            )
        })
        .collect();
    signatures.join(" ")
}

/// What became of an event after all its attempts.
enum Outcome {
    Delivered,
    GaveUp {
        attempts: u32,
        last_error: String,
    },
    /// The endpoint answered 410 Gone.
    Gone {
        error: String,
    },
    Shutdown,
}

/// A failed attempt.
struct Failure {
    error: String,
    /// The wait the endpoint asked for with `Retry-After`.
    retry_after: Option<Duration>,
    gone: bool,
}

impl Failure {
    fn plain(error: String) -> Failure {
        Failure {
            error,
            retry_after: None,
            gone: false,
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past
/// means no extra wait.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

pub struct WebhookSink {
    name: String,
    config: WebhookSinkConfig,
    secrets: Vec<Vec<u8>>,
    uri: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    journal: JournalHandle,
}

impl WebhookSink {
    pub fn new(
        name: &str,
        config: &WebhookSinkConfig,
        journal: JournalHandle,
    ) -> anyhow::Result<WebhookSink> {
        let secrets = config
            .load_secrets(&format!("sinks.{name}.webhook"))
            .map_err(|p| anyhow::anyhow!("{p}"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(WebhookSink {
            name: name.to_owned(),
            uri: config.url.parse()?,
            config: config.clone(),
            secrets,
            client,
            journal,
        })
    }

    /// Runs the sink until shutdown: replays first, then the outbox after the cursor.
    pub async fn run(
        self,
        mut feed: Feed,
        mut replays: mpsc::Receiver<u64>,
        mut enable: watch::Receiver<u64>,
    ) {
        match feed.store().sink_disabled::<SinkDisabled>(&self.name) {
            Ok(Some(disabled)) => {
                // Journaled again in case the crash came between storing and journaling; the
                // journal drops it when it is already there.
                if !self.stay_disabled(&feed, &mut enable, &disabled).await {
                    return;
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(sink = %self.name, %error, "cannot read whether the sink is disabled");
            }
        }
        loop {
            while let Ok(seq) = replays.try_recv() {
                if !self.replay(&mut feed, &mut enable, seq).await {
                    return;
                }
            }
            let events = match feed.read_after(feed.cursor()) {
                Ok(events) => events,
                Err(error) => {
                    tracing::error!(sink = %self.name, %error, "cannot read the outbox");
                    if !feed.pause(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            if events.is_empty() {
                let cursor = feed.cursor();
                tokio::select! {
                    more = feed.wait_after(cursor) => if !more { return },
                    seq = replays.recv() => match seq {
                        Some(seq) => if !self.replay(&mut feed, &mut enable, seq).await { return },
                        None => return,
                    },
                }
                continue;
            }
            for (i, event) in events.iter().enumerate() {
                let next_time = events.get(i + 1).map(|e| e.time);
                match self.deliver(&feed, event).await {
                    Outcome::Delivered => feed.delivered(1),
                    Outcome::GaveUp {
                        attempts,
                        last_error,
                    } => {
                        let generation = feed
                            .store()
                            .sink_dead_get::<DeadLetter>(&self.name, event.seq)
                            .ok()
                            .flatten()
                            .map(|d| d.generation)
                            .unwrap_or(0);
                        let dead = DeadLetter::new(event, attempts, &last_error, generation);
                        if !self.give_up(&feed, &dead).await {
                            return;
                        }
                    }
                    Outcome::Gone { error } => {
                        if !self.disable(&feed, &mut enable, event, error).await {
                            return;
                        }
                        // Again from the refused event, which the cursor has not passed.
                        break;
                    }
                    Outcome::Shutdown => return,
                }
                feed.commit(event.seq, next_time);
            }
        }
    }

    /// Disables the sink after a 410 Gone for `event`, then waits to be enabled; false on
    /// shutdown.
    async fn disable(
        &self,
        feed: &Feed,
        enable: &mut watch::Receiver<u64>,
        event: &OutEvent,
        error: String,
    ) -> bool {
        tracing::warn!(sink = %self.name, seq = event.seq, %error, "the endpoint is gone; the sink is disabled until POST /v1/control/sinks/{}/enable", self.name);
        let disabled = SinkDisabled {
            sink: self.name.clone(),
            event_seq: event.seq,
            event_id: event.id.clone(),
            event_subject: event.subject.clone(),
            reason: error,
            at: chrono::Utc::now(),
        };
        let mut retry = 0;
        while let Err(error) = feed.store().sink_set_disabled(&self.name, Some(&disabled)) {
            tracing::error!(sink = %self.name, %error, "cannot store that the sink is disabled; retrying");
            retry += 1;
            if !feed.pause(backoff(retry, 100, 10_000)).await {
                return false;
            }
        }
        self.stay_disabled(feed, enable, &disabled).await
    }

    /// Announces the disabling (the journal's flush also makes the stored flag durable), waits
    /// for the control API to enable the sink, and clears the flag; false on shutdown.
    async fn stay_disabled(
        &self,
        feed: &Feed,
        enable: &mut watch::Receiver<u64>,
        disabled: &SinkDisabled,
    ) -> bool {
        // Only enable requests made from now on count.
        enable.borrow_and_update();
        feed.set_disabled(Some(&format!("disabled: {}", disabled.reason)));
        let mut retry = 0;
        while let Err(error) = self
            .journal
            .append(Record::SinkDisabled(disabled.clone()))
            .await
        {
            tracing::warn!(sink = %self.name, %error, "cannot journal that the sink is disabled; retrying");
            retry += 1;
            if !feed.pause(backoff(retry, 100, 10_000)).await {
                return false;
            }
        }
        tokio::select! {
            changed = enable.changed() => if changed.is_err() { return false },
            () = feed.shutdown.cancelled() => return false,
        }
        tracing::info!(sink = %self.name, "sink enabled again");
        if let Err(error) = feed
            .store()
            .sink_set_disabled::<SinkDisabled>(&self.name, None)
        {
            // Delivery goes on; a restart would find the sink disabled again.
            tracing::error!(sink = %self.name, %error, "cannot store that the sink is enabled");
        }
        feed.set_disabled(None);
        true
    }

    /// Redelivers one dead letter; false on shutdown. A 410 Gone leaves it in the list.
    async fn replay(&self, feed: &mut Feed, enable: &mut watch::Receiver<u64>, seq: u64) -> bool {
        let dead = match feed.store().sink_dead_get::<DeadLetter>(&self.name, seq) {
            Ok(Some(dead)) => dead,
            Ok(None) => return true,
            Err(error) => {
                tracing::error!(sink = %self.name, seq, %error, "cannot read a dead letter");
                return true;
            }
        };
        tracing::info!(sink = %self.name, seq, "replaying a dead letter");
        match self.deliver(feed, &dead.to_event()).await {
            Outcome::Delivered => {
                feed.delivered(1);
                let cursor = feed.cursor();
                feed.commit(cursor, None);
                if let Err(error) = feed.store().sink_dead_remove(&self.name, seq) {
                    tracing::error!(sink = %self.name, seq, %error, "cannot remove a dead letter");
                }
                true
            }
            Outcome::GaveUp {
                attempts,
                last_error,
            } => {
                let mut again = dead.clone();
                again.attempts = attempts;
                again.last_error = last_error;
                again.generation = dead.generation + 1;
                again.dead_lettered_at = chrono::Utc::now();
                self.give_up(feed, &again).await
            }
            Outcome::Gone { error } => self.disable(feed, enable, &dead.to_event(), error).await,
            Outcome::Shutdown => false,
        }
    }

    /// Keeps the dead letter, then journals the give-up (unless the event is itself this
    /// sink's own dead-letter notice, which would otherwise feed a loop). False on shutdown.
    async fn give_up(&self, feed: &Feed, dead: &DeadLetter) -> bool {
        tracing::warn!(sink = %self.name, seq = dead.event_seq, attempts = dead.attempts, error = %dead.last_error, "event dead-lettered");
        let mut retry = 0;
        while let Err(error) = feed.store().sink_dead_put(&self.name, dead.event_seq, dead) {
            tracing::error!(sink = %self.name, %error, "cannot store a dead letter; retrying");
            retry += 1;
            if !feed.pause(backoff(retry, 100, 10_000)).await {
                return false;
            }
        }
        feed.dead_lettered();
        if self.is_own_notice(dead) {
            return true;
        }
        let record = Record::SinkDeadLettered(dead.record(&self.name));
        loop {
            // The append flushes, which also makes the dead letter above durable.
            match self.journal.append(record.clone()).await {
                Ok(_) => return true,
                Err(error) => {
                    tracing::warn!(sink = %self.name, %error, "cannot journal a dead letter; retrying");
                    retry += 1;
                    if !feed.pause(backoff(retry, 100, 10_000)).await {
                        return false;
                    }
                }
            }
        }
    }

    fn is_own_notice(&self, dead: &DeadLetter) -> bool {
        dead.event_type == EventType::SinkDeadLettered.as_str()
            && serde_json::from_str::<serde_json::Value>(&dead.event)
                .map(|event| event["data"]["sink"] == self.name.as_str())
                .unwrap_or(false)
    }

    /// Tries an event until it is delivered, the schedule runs out, the endpoint is gone, or
    /// shutdown.
    async fn deliver(&self, feed: &Feed, event: &OutEvent) -> Outcome {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let failure = tokio::select! {
                result = self.post(event) => match result {
                    Ok(()) => return Outcome::Delivered,
                    Err(failure) => failure,
                },
                () = feed.shutdown.cancelled() => return Outcome::Shutdown,
            };
            let error = failure.error;
            tracing::debug!(sink = %self.name, seq = event.seq, attempt, %error, "webhook attempt failed");
            if failure.gone {
                return Outcome::Gone { error };
            }
            let Some(delay) = self.config.retry_schedule_secs.get(attempt as usize - 1) else {
                return Outcome::GaveUp {
                    attempts: attempt,
                    last_error: error,
                };
            };
            feed.failed(&error, Some(event.time));
            let cap = Duration::from_secs(self.config.max_retry_after_secs);
            let asked = failure.retry_after.unwrap_or_default().min(cap);
            let wait = Duration::from_secs(*delay).max(asked);
            if !feed.pause(wait).await {
                return Outcome::Shutdown;
            }
        }
    }

    /// One attempt: Ok on a 2xx answer.
    async fn post(&self, event: &OutEvent) -> Result<(), Failure> {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(&self.secrets, &event.id, timestamp, &event.body);
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/cloudevents+json")
            .header(http::header::USER_AGENT, "deskgate")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(event.body.clone()))
            .map_err(|e| Failure::plain(format!("building the request: {e}")))?;
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Failure::plain(format!("request failed: {e}")))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()));
            // Read the answer to the end so that the connection can be reused.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(Failure {
                    error: format!("answered {status}"),
                    retry_after,
                    gone: status == http::StatusCode::GONE,
                })
            }
        };
        let started = std::time::Instant::now();
        let answered = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::plain(format!(
                    "no answer within {} ms",
                    self.config.timeout_ms
                )))
            });
        metrics::histogram!("deskgate_sink_request_duration_seconds", "sink" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        answered
    }
}
