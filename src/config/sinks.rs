//! Event sinks (`[sinks.<name>]`) and outbox retention (`[retention]`).
//!
//! Every sink reads the outbox with its own durable cursor. A sink's kind-specific options live
//! in a sub-table named after the kind: `[sinks.js.nats]`, `[sinks.crm.webhook]`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{is_valid_name, ConfigProblem, Problems};

/// One event sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub kind: SinkKind,
    /// The most events read from the outbox at a time.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// `/readyz` answers 503 `unready` while the sink is more than this many events behind
    /// (unset: no limit; a failing sink under its limits only makes readiness `degraded`).
    #[serde(default)]
    pub max_lag_events: Option<u64>,
    /// The same, for the age in seconds of the oldest event the sink has not delivered.
    #[serde(default)]
    pub max_lag_secs: Option<u64>,
    /// Options of a `nats` sink.
    #[serde(default)]
    pub nats: Option<NatsSinkConfig>,
    /// Options of a `webhook` sink.
    #[serde(default)]
    pub webhook: Option<WebhookSinkConfig>,
}

fn default_batch() -> usize {
    512
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Publishes to a NATS JetStream stream.
    Nats,
    /// POSTs each event to a URL with Standard Webhooks signatures.
    Webhook,
}

/// A NATS JetStream sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSinkConfig {
    /// NATS server URLs, such as `nats://127.0.0.1:4222`.
    pub servers: Vec<String>,
    /// The stream, created when absent with the options below.
    pub stream: String,
    /// Each event is published to `<subject_prefix>.<ticket or contact id>.<event type without
    /// "deskgate.">` (docs/sinks.md); the stream takes `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// `file` or `memory`.
    pub storage: NatsStorage,
    /// Copies of each message in a clustered JetStream (1 on a single server).
    pub replicas: usize,
    /// JetStream drops a re-published `Nats-Msg-Id` seen within this window. It must be longer
    /// than the worst gap between a publish and its retry (a NATS outage included).
    pub duplicate_window_secs: u64,
    /// The most publishes awaiting their acks at once (never two of the same subject).
    pub max_in_flight: usize,
    /// How long to wait for a publish ack before retrying from the last acked event.
    pub ack_timeout_ms: u64,
    /// Retry delays grow from this...
    pub backoff_min_ms: u64,
    /// ...to this, with jitter.
    pub backoff_max_ms: u64,
}

impl Default for NatsSinkConfig {
    fn default() -> Self {
        NatsSinkConfig {
            servers: vec!["nats://127.0.0.1:4222".to_owned()],
            stream: "DESKGATE".to_owned(),
            subject_prefix: "deskgate.events".to_owned(),
            storage: NatsStorage::File,
            replicas: 1,
            duplicate_window_secs: 24 * 3600,
            max_in_flight: 256,
            ack_timeout_ms: 5_000,
            backoff_min_ms: 100,
            backoff_max_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatsStorage {
    File,
    Memory,
}

/// A signed HTTP webhook sink (Standard Webhooks).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSinkConfig {
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Files each holding one `whsec_<base64>` secret. Every secret signs every request (one
    /// `v1,` signature each), so a receiver can rotate.
    pub secret_files: Vec<PathBuf>,
    /// A request without a complete answer within this time counts as failed (the Standard
    /// Webhooks specification recommends 15 to 30 seconds).
    pub timeout_ms: u64,
    /// Seconds to wait before each retry of a failed event; the first attempt is immediate, so
    /// an event gets `1 + len` attempts before it goes to the dead-letter list. The default is
    /// the specification's example: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27.6 h).
    pub retry_schedule_secs: Vec<u64>,
    /// A `Retry-After` answer (seconds or an HTTP date) delays the next attempt beyond the
    /// schedule, up to this many seconds.
    pub max_retry_after_secs: u64,
    /// Replaced by `retry_schedule_secs`; refused with a message saying so.
    pub max_attempts: Option<u32>,
    /// Replaced by `retry_schedule_secs`.
    pub backoff_min_ms: Option<u64>,
    /// Replaced by `retry_schedule_secs`.
    pub backoff_max_ms: Option<u64>,
}

impl Default for WebhookSinkConfig {
    fn default() -> Self {
        WebhookSinkConfig {
            url: String::new(),
            secret_files: Vec::new(),
            timeout_ms: 15_000,
            retry_schedule_secs: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000],
            max_retry_after_secs: 24 * 3600,
            max_attempts: None,
            backoff_min_ms: None,
            backoff_max_ms: None,
        }
    }
}

impl WebhookSinkConfig {
    /// Reads the secrets: their key bytes, decoded from `whsec_<base64>`.
    pub fn load_secrets(&self, path: &str) -> Result<Vec<Vec<u8>>, ConfigProblem> {
        use base64::Engine;
        self.secret_files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let problem = |message: String| ConfigProblem {
                    path: format!("{path}.secret_files[{i}]"),
                    message,
                };
                let text = super::read_secret_file(file).map_err(problem)?;
                let encoded = text.trim().strip_prefix("whsec_").ok_or_else(|| {
                    problem(format!("{} must hold a whsec_ secret", file.display()))
                })?;
                let key = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| {
                        problem(format!("{}: not base64 after whsec_: {e}", file.display()))
                    })?;
                if key.len() < 24 {
                    return Err(problem(format!(
                        "the secret in {} must be at least 24 bytes",
                        file.display()
                    )));
                }
                Ok(key)
            })
            .collect()
    }
}

/// How long the outbox keeps events. An event is deleted only once every sink has passed it
/// and it is both older than `min_age_secs` and behind the newest `min_events` events.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep every event at least this long (by its `time`), for readers of `GET /v1/events`.
    pub min_age_secs: u64,
    /// Keep at least this many of the newest events.
    pub min_events: u64,
    /// How often the compaction task looks for events to delete.
    pub compact_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            min_age_secs: 7 * 24 * 3600,
            min_events: 100_000,
            compact_interval_secs: 60,
        }
    }
}

/// Problems with the sinks and retention, each with its path.
pub fn validate(
    sinks: &std::collections::BTreeMap<String, SinkConfig>,
    retention: &RetentionConfig,
) -> Vec<ConfigProblem> {
    let mut problems = Problems::default();
    problems.check(
        retention.compact_interval_secs > 0,
        "retention.compact_interval_secs",
        "must be > 0",
    );
    for (name, sink) in sinks {
        let at = format!("sinks.{name}");
        problems.check(
            is_valid_name(name),
            at.clone(),
            "sink names must be 1-64 characters of a-z, 0-9, '-' and '_'",
        );
        problems.check(sink.batch > 0, format!("{at}.batch"), "must be > 0");
        for (field, limit) in [
            ("max_lag_events", sink.max_lag_events),
            ("max_lag_secs", sink.max_lag_secs),
        ] {
            problems.check(
                limit != Some(0),
                format!("{at}.{field}"),
                "must be > 0 (leave it out for no limit)",
            );
        }
        match sink.kind {
            SinkKind::Nats => {
                problems.check(
                    sink.webhook.is_none(),
                    format!("{at}.webhook"),
                    "only for kind = \"webhook\"",
                );
                match &sink.nats {
                    None => problems.push(format!("{at}.nats"), "a nats sink needs this table"),
                    Some(nats) => validate_nats(nats, &format!("{at}.nats"), &mut problems),
                }
            }
            SinkKind::Webhook => {
                problems.check(
                    sink.nats.is_none(),
                    format!("{at}.nats"),
                    "only for kind = \"nats\"",
                );
                match &sink.webhook {
                    None => {
                        problems.push(format!("{at}.webhook"), "a webhook sink needs this table")
                    }
                    Some(hook) => validate_webhook(hook, &format!("{at}.webhook"), &mut problems),
                }
            }
        }
    }
    for sink in sinks {
        if let Some(hook) = &sink.1.webhook {
            problems.extend(
                hook.load_secrets(&format!("sinks.{}.webhook", sink.0))
                    .err(),
            );
        }
    }
    problems.into_vec()
}

fn validate_nats(nats: &NatsSinkConfig, at: &str, problems: &mut Problems) {
    problems.check(
        !nats.servers.is_empty(),
        format!("{at}.servers"),
        "must name at least one server",
    );
    problems.check(
        !nats.stream.is_empty()
            && !nats
                .stream
                .contains(|c: char| c.is_whitespace() || ".*>".contains(c)),
        format!("{at}.stream"),
        "must be a JetStream stream name (no spaces, '.', '*' or '>')",
    );
    problems.check(
        !nats.subject_prefix.is_empty()
            && nats
                .subject_prefix
                .split('.')
                .all(|token| !token.is_empty() && !token.contains(['*', '>', ' '])),
        format!("{at}.subject_prefix"),
        "must be dot-separated subject tokens without wildcards",
    );
    problems.check(
        (1..=5).contains(&nats.replicas),
        format!("{at}.replicas"),
        "must be 1 to 5",
    );
    problems.check(
        nats.max_in_flight > 0,
        format!("{at}.max_in_flight"),
        "must be > 0",
    );
    problems.check(
        nats.ack_timeout_ms > 0,
        format!("{at}.ack_timeout_ms"),
        "must be > 0",
    );
    check_backoff(nats.backoff_min_ms, nats.backoff_max_ms, at, problems);
    // A re-publish after the longest retry delay must still fall inside the window.
    problems.check(
        nats.duplicate_window_secs * 1000 > 2 * (nats.backoff_max_ms + nats.ack_timeout_ms),
        format!("{at}.duplicate_window_secs"),
        "must exceed twice the longest retry gap (backoff_max_ms + ack_timeout_ms)",
    );
}

fn validate_webhook(hook: &WebhookSinkConfig, at: &str, problems: &mut Problems) {
    problems.check(
        hook.url.starts_with("http://") || hook.url.starts_with("https://"),
        format!("{at}.url"),
        "must be an http:// or https:// URL",
    );
    problems.check(
        hook.url.parse::<http::Uri>().is_ok(),
        format!("{at}.url"),
        "is not a valid URL",
    );
    problems.check(
        !hook.secret_files.is_empty(),
        format!("{at}.secret_files"),
        "needs at least one secret",
    );
    problems.check(
        hook.timeout_ms > 0,
        format!("{at}.timeout_ms"),
        "must be > 0",
    );
    problems.check(
        hook.retry_schedule_secs.len() < 1000,
        format!("{at}.retry_schedule_secs"),
        "must hold fewer than 1000 delays",
    );
    for (field, set) in [
        ("max_attempts", hook.max_attempts.is_some()),
        ("backoff_min_ms", hook.backoff_min_ms.is_some()),
        ("backoff_max_ms", hook.backoff_max_ms.is_some()),
    ] {
        problems.check(
            !set,
            format!("{at}.{field}"),
            "replaced by retry_schedule_secs (one delay per retry, in seconds)",
        );
    }
}

fn check_backoff(min: u64, max: u64, at: &str, problems: &mut Problems) {
    problems.check(min > 0, format!("{at}.backoff_min_ms"), "must be > 0");
    problems.check(
        max >= min,
        format!("{at}.backoff_max_ms"),
        "must be >= backoff_min_ms",
    );
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// The Standard Webhooks specification's defaults: a timeout within its recommended 15 to
    /// 30 seconds, and retries spread over more than a day (its example schedule), not minutes.
    #[test]
    fn webhook_defaults_follow_the_specification() {
        let hook = super::WebhookSinkConfig::default();
        assert!(
            (15_000..=30_000).contains(&hook.timeout_ms),
            "{}",
            hook.timeout_ms
        );
        let span: u64 = hook.retry_schedule_secs.iter().sum();
        assert!(span > 24 * 3600, "retries span only {span} s");
        assert_eq!(hook.retry_schedule_secs[0], 5, "the first retry comes soon");
    }

    #[test]
    fn the_shipped_examples_parse_and_validate_when_uncommented() {
        let shipped = include_str!("../../config/deskgate.toml");
        let start = shipped
            .find("# [sinks.js]")
            .expect("the example is shipped");
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("crm.secret");
        std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let uncommented: String = shipped[start..]
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                let key = line.split(" = ").next().unwrap_or_default();
                line.starts_with('[')
                    || (line.contains(" = ")
                        && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            })
            .map(|line| {
                line.replace(
                    "/run/credentials/deskgate.service/crm-webhook",
                    secret.to_str().unwrap(),
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&format!("{}\n{uncommented}", &shipped[..start])).unwrap();
        assert_eq!(config.validate(), vec![]);
        assert_eq!(config.sinks.len(), 2);
    }

    #[test]
    fn every_sink_problem_is_reported_with_its_path() {
        let config = Config::parse(
            r#"
[sinks.js]
kind = "nats"
[sinks.js.nats]
servers = []
stream = "bad.name"
subject_prefix = "a.*"
duplicate_window_secs = 10
[sinks.hook]
kind = "webhook"
[sinks.hook.webhook]
url = "ftp://example.com"
secret_files = ["/nonexistent/secret"]
max_attempts = 3
[sinks.empty]
kind = "webhook"
"#,
        )
        .unwrap();
        let paths: Vec<String> = config.validate().into_iter().map(|p| p.path).collect();
        for expected in [
            "sinks.js.nats.servers",
            "sinks.js.nats.stream",
            "sinks.js.nats.subject_prefix",
            "sinks.js.nats.duplicate_window_secs",
            "sinks.hook.webhook.url",
            "sinks.hook.webhook.max_attempts",
            "sinks.hook.webhook.secret_files[0]",
            "sinks.empty.webhook",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} not in {paths:?}"
            );
        }
    }
}
