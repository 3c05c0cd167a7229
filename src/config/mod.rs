//! The daemon's configuration: TOML into serde structs, then validation that reports every
//! problem at once with its path in the file (`channels.web.max_body_bytes: must be > 0`).
//!
//! `deskgate check-config` and `deskgate run` go through the same [`Config::load`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod sinks;
pub use sinks::{RetentionConfig, SinkConfig};
pub mod email;

pub use email::EmailConfig;
mod routing;
pub use routing::*;
mod chat;
mod consent;
mod form;
mod hours;
pub use hours::{Hours, OfficeHours, OpenSpan};
mod kinds;
mod language;
mod meta;
mod secret;
pub use secret::{read_secret_file, secret_path};

pub use chat::{validate_transcripts, ChatConfig, RateLimitConfig, TranscriptConfig};
pub use form::{FormConfig, FormFields, TICKET_PROPERTIES};
pub use meta::MetaConfig;
pub mod imap;

pub use imap::ImapConfig;
pub mod outbound;
pub use outbound::OutboundConfig;
mod contacts;
pub use contacts::ContactsConfig;
mod parse_all;
mod problems;
use problems::Problems;
mod reload;
pub use reload::Reloaded;
mod validate;
mod warnings;

/// Everything deskgate reads from its config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub journal: JournalConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub contacts: ContactsConfig,
    /// Inbound channels by id; each gets the URL `/hooks/{id}`.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Event sinks by name (`[sinks.<name>]`), each with its own durable cursor.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// How long the outbox keeps events once every sink has passed them.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Users, teams and ticket pipelines.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Sending: SMTP per team mailbox, the Graph API, templates, caps (`src/config/outbound.rs`).
    #[serde(default)]
    pub outbound: OutboundConfig,
}

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address for webhooks and health checks, and (unless `control_listen` is set) the events
    /// API, status, metrics and the control API.
    pub listen: SocketAddr,
    /// A separate address for the events API, status, `/metrics` and the control API, so that
    /// only the hooks face the internet.
    pub control_listen: Option<SocketAddr>,
    /// Addresses of reverse proxies in front of deskgate. Only from these is
    /// `X-Forwarded-For` believed (for per-client rate limits); from anyone else it is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A client that has not sent its request headers within this time is disconnected.
    pub header_read_timeout_secs: u64,
    /// A request body not fully received within this time is answered 408, so that a slow
    /// upload cannot hold a connection and a journal slot forever.
    pub body_read_timeout_secs: u64,
    /// On SIGTERM, the whole stop gets this long from the signal: in-flight requests, a send
    /// under way, the journal's last flush and the processor's catch-up share it.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            control_listen: None,
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            shutdown_grace_secs: 10,
        }
    }
}

/// The storage engine's block cache when the config does not say otherwise. At a million
/// contacts (`deskgate-bench contacts`, `docs/performance.md`) 64 MiB served 460,000 to
/// 625,000 identity lookups a second on the 2-core machines measured, with the daemon at 93
/// to 129 MB; 128 MiB took it to 128–204 MB, over the 150 MB it is meant to stay under.
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// Where deskgate keeps its state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// The state directory (the embedded database, attachment blobs); relative paths start at
    /// the working directory.
    pub dir: PathBuf,
    /// After a write failed for lack of space, deskgate answers 503 until the state directory's
    /// filesystem has this much free again, then restarts itself to reopen the database.
    pub min_free_bytes: u64,
    /// Bytes of the storage engine's block cache; bounds resident memory however large the
    /// state grows.
    pub cache_capacity_bytes: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            dir: PathBuf::from("data"),
            min_free_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The durable journal every inbound message passes through before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Messages waiting for the journal writer; when full, inputs answer 503 with Retry-After.
    pub queue_capacity: usize,
    /// The most messages one group commit (one disk flush) takes.
    pub max_batch: usize,
    /// How long a request may wait for room in the queue before it answers 503.
    pub enqueue_timeout_ms: u64,
    /// How long a request may wait for its flush before it answers 503; the message may still
    /// be kept, and a retry is then answered as a duplicate.
    pub ack_timeout_ms: u64,
    /// Records the processor applied more than this long ago are deleted with their
    /// deduplication keys: a source resending a message after that long has it journaled
    /// again. Keep it above the longest resend window of every source (WhatsApp retries for
    /// 36 hours, MTAs for up to 5 days).
    pub retention_secs: u64,
    /// How often the journal's retention pass runs.
    pub compact_interval_secs: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            queue_capacity: 16_384,
            max_batch: 2_048,
            enqueue_timeout_ms: 500,
            ack_timeout_ms: 10_000,
            retention_secs: 30 * 24 * 3600,
            compact_interval_secs: 300,
        }
    }
}

/// The event outbox and its HTTP pull API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// A short name of this deskgate (1-64 of a-z, 0-9, `-`, `_`). Events no longer carry it:
    /// their `source` is [`EventsConfig::source`]. Kept so that configs naming it still load.
    pub instance: String,
    /// Every event's CloudEvents `source`: an absolute URI naming this deskgate instance, such
    /// as the base URL it is reached at (`https://desk.example.com/deskgate`), which also makes
    /// each event's `dataschema` (`{source}/v1/schemas/events/{type}.json`) resolvable. Unset:
    /// `urn:deskgate:{instance id}`, the state directory's own id.
    pub source: Option<String>,
    /// The longest `wait` a reader of `GET /v1/events` may ask for.
    pub max_wait_secs: u64,
    /// The most events one `GET /v1/events` returns.
    pub max_limit: usize,
    /// The most journal records the processor applies in one commit.
    pub processor_batch: usize,
    /// Require a control bearer token on `GET /v1/events`. Turning it off is allowed only when
    /// the events API listens on a loopback address.
    pub require_token: bool,
}

impl EventsConfig {
    /// The `source` of every event: `events.source` without a trailing `/`, else
    /// `urn:deskgate:{instance_id}`.
    pub fn source(&self, instance_id: uuid::Uuid) -> String {
        match &self.source {
            Some(source) => source.trim_end_matches('/').to_owned(),
            None => format!("urn:deskgate:{instance_id}"),
        }
    }
}

/// An absolute URI (RFC 3986 `scheme ":" hier-part`) that a path can be appended to: a scheme,
/// something after it, and no whitespace, query or fragment.
fn is_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let rest_ok = !rest.trim_end_matches('/').is_empty()
        && !rest.contains(|c: char| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'));
    scheme_ok && rest_ok
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            instance: "deskgate".to_owned(),
            source: None,
            max_wait_secs: 60,
            max_limit: 1_000,
            processor_batch: 512,
            require_token: true,
        }
    }
}

/// The control API (`/v1/control/...`), used by the ticket store and admins.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Files each holding one bearer token (surrounding whitespace ignored), for example under
    /// `$CREDENTIALS_DIRECTORY`. Several allow rotation. Without any, the control API refuses
    /// every request.
    pub token_files: Vec<PathBuf>,
}

impl ControlConfig {
    /// Reads the tokens, or says what is wrong with every file that fails. Secrets are never
    /// inline in the config file.
    pub fn load_tokens(&self) -> Result<Vec<String>, Vec<ConfigProblem>> {
        let (tokens, problems): (Vec<_>, Vec<_>) = self
            .token_files
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let problem = |message: String| ConfigProblem {
                    path: format!("control.token_files[{i}]"),
                    message,
                };
                let token = read_secret(path).map_err(problem)?;
                if token.len() < 16 {
                    return Err(problem(format!(
                        "the token in {} must be at least 16 characters",
                        path.display()
                    )));
                }
                Ok(token)
            })
            .partition(Result::is_ok);
        if problems.is_empty() {
            Ok(tokens.into_iter().flatten().collect())
        } else {
            Err(problems.into_iter().filter_map(Result::err).collect())
        }
    }
}

/// Reads a secret from a file, trimmed. The error names the file, never the content.
pub fn read_secret(path: &Path) -> Result<String, String> {
    let secret = secret::read_secret_file(path)?.trim().to_owned();
    if secret.is_empty() {
        return Err(format!(
            "secret file {} is empty",
            secret::secret_path(path).display()
        ));
    }
    Ok(secret)
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `deskgate=debug`; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            filter: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

/// One inbound channel. The kind decides the format `/hooks/{id}` accepts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub kind: ChannelKind,
    /// Larger request bodies are refused with 413 before they are read.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// How mail is read, for `kind = "email"` channels (`[channels.<id>.email]`).
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Tickets: whether messages open them, their defaults and who they are routed to.
    #[serde(default)]
    pub tickets: Option<ChannelTickets>,
    /// Messenger and WhatsApp: `[channels.<id>.meta]`.
    #[serde(default)]
    pub meta: Option<MetaConfig>,
    /// Website chat: `[channels.<id>.chat]` (optional; defaults apply).
    #[serde(default)]
    pub chat: Option<ChatConfig>,
    /// Web forms: `[channels.<id>.form]` (optional; defaults apply).
    #[serde(default)]
    pub form: Option<FormConfig>,
    /// For `kind = "email"`: the IMAP mailbox this channel pulls (see [`ImapConfig`]).
    #[serde(default)]
    pub imap: Option<ImapConfig>,
    /// The language of automatic mail on this channel's conversations (`en`, `fr`) where the
    /// customer's own is unknown; the answering mailbox's, then `outbound.language`, if unset.
    #[serde(default)]
    pub language: Option<outbound::Language>,
}

impl ChannelConfig {
    /// A channel of this kind with every option at its default (for tools and tests).
    pub fn of_kind(kind: ChannelKind) -> ChannelConfig {
        // Exhaustive, so a new kind cannot be forgotten; the names are the serde names below.
        let name = match kind {
            ChannelKind::Api => "api",
            ChannelKind::Email => "email",
            ChannelKind::Messenger => "messenger",
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::Chat => "chat",
            ChannelKind::Form => "form",
        };
        toml::from_str(&format!("kind = {name:?}")).expect("a kind alone is a valid channel table")
    }

    /// The email options in force: the sub-table, or the defaults.
    pub fn email_options(&self) -> EmailConfig {
        self.email.clone().unwrap_or_default()
    }
}

fn default_max_body_bytes() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// The generic JSON API for integrations and imports.
    Api,
    /// Team email: raw RFC 5322 mail pushed to `/hooks/{id}` by an MTA (and pulled over IMAP).
    Email,
    /// Facebook Messenger (Meta webhooks); needs `[channels.<id>.meta]`.
    Messenger,
    /// WhatsApp Business Cloud API (Meta webhooks); needs `[channels.<id>.meta]`.
    Whatsapp,
    /// The website chat widget's backend.
    Chat,
    /// Web forms: JSON, urlencoded or multipart submissions.
    Form,
}

impl ChannelKind {
    /// Chat and Messenger: conversations that run no status triggers or actions unless a
    /// pipeline's `include_chat` (or an action's) says so, as in HubSpot.
    pub fn is_chat(self) -> bool {
        match self {
            ChannelKind::Chat | ChannelKind::Messenger => true,
            ChannelKind::Api | ChannelKind::Email | ChannelKind::Whatsapp | ChannelKind::Form => {
                false
            }
        }
    }
}

/// One problem in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path in the file, such as `channels.web.max_body_bytes`; empty for the file itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a valid config:", self.file.display())?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Channel ids and instance names appear in URLs, index keys and event sources.
pub(crate) fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
