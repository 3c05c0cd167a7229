//! The webhook sink: POSTs each event as CloudEvents JSON with Standard Webhooks signatures,
//! one at a time and in order.
//!
//! Headers: `webhook-id` (the event id, the same on every attempt), `webhook-timestamp` (unix
//! seconds of the attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256>` of
//! `id.timestamp.body`, one per configured secret, space-separated). A 2xx answer moves on;
//! anything else, or no answer within the timeout, is retried with jittered exponential
//! backoff; after `max_attempts` the event becomes a dead letter and the sink moves on.

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
use tokio::sync::mpsc;

use super::backoff;
use super::dead_letter::DeadLetter;
use super::feed::{Feed, OutEvent};
use crate::config::sinks::WebhookSinkConfig;
use crate::events::EventType;
use crate::journal::JournalHandle;
use crate::model::Record;

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
    GaveUp { attempts: u32, last_error: String },
    Shutdown,
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
    pub async fn run(self, mut feed: Feed, mut replays: mpsc::Receiver<u64>) {
        loop {
            while let Ok(seq) = replays.try_recv() {
                if !self.replay(&mut feed, seq).await {
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
                        Some(seq) => if !self.replay(&mut feed, seq).await { return },
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
                            .store
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
                    Outcome::Shutdown => return,
                }
                feed.commit(event.seq, next_time);
            }
        }
    }

    /// Redelivers one dead letter; false on shutdown.
    async fn replay(&self, feed: &mut Feed, seq: u64) -> bool {
        let dead = match feed.store.sink_dead_get::<DeadLetter>(&self.name, seq) {
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
                if let Err(error) = feed.store.sink_dead_remove(&self.name, seq) {
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
            Outcome::Shutdown => false,
        }
    }

    /// Keeps the dead letter, then journals the give-up (unless the event is itself this
    /// sink's own dead-letter notice, which would otherwise feed a loop). False on shutdown.
    async fn give_up(&self, feed: &Feed, dead: &DeadLetter) -> bool {
        tracing::warn!(sink = %self.name, seq = dead.event_seq, attempts = dead.attempts, error = %dead.last_error, "event dead-lettered");
        let mut retry = 0;
        while let Err(error) = feed.store.sink_dead_put(&self.name, dead.event_seq, dead) {
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

    /// Tries an event until it is delivered, attempts run out, or shutdown.
    async fn deliver(&self, feed: &Feed, event: &OutEvent) -> Outcome {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = tokio::select! {
                result = self.post(event) => match result {
                    Ok(()) => return Outcome::Delivered,
                    Err(error) => error,
                },
                () = feed.shutdown.cancelled() => return Outcome::Shutdown,
            };
            tracing::debug!(sink = %self.name, seq = event.seq, attempt, %error, "webhook attempt failed");
            if attempt >= self.config.max_attempts {
                return Outcome::GaveUp {
                    attempts: attempt,
                    last_error: error,
                };
            }
            feed.failed(&error, Some(event.time));
            let wait = backoff(
                attempt - 1,
                self.config.backoff_min_ms,
                self.config.backoff_max_ms,
            );
            if !feed.pause(wait).await {
                return Outcome::Shutdown;
            }
        }
    }

    /// One attempt: Ok on a 2xx answer.
    async fn post(&self, event: &OutEvent) -> Result<(), String> {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(&self.secrets, &event.id, timestamp, &event.body);
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/cloudevents+json")
            .header(http::header::USER_AGENT, "deskgate")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(event.body.clone()))
            .map_err(|e| format!("building the request: {e}"))?;
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = response.status();
            // Read the answer to the end so that the connection can be reused.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered {status}"))
            }
        };
        let started = std::time::Instant::now();
        let answered = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", self.config.timeout_ms)));
        metrics::histogram!("deskgate_sink_request_duration_seconds", "sink" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        answered
    }
}
