//! `[channels.<id>.chat]`: the website chat widget's backend, the transcript mailed to a
//! visitor when their conversation closes, and public-endpoint rate limits shared with web
//! forms.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::secret::{read_secret, SecretCell};
use super::{ConfigProblem, Problems};

/// Website chat settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// A shared secret; when set, every POST must carry
    /// `X-Deskgate-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Office hours, for the widget's availability answer; absent: always open.
    #[serde(default)]
    pub hours: Option<super::OfficeHours>,
    /// The transcript mailed to a visitor who gave an email address when their conversation
    /// closes; absent: no transcripts.
    #[serde(default)]
    pub transcript: Option<TranscriptConfig>,
    #[serde(skip)]
    secret: SecretCell,
}

impl ChatConfig {
    /// The shared secret, when one is configured.
    pub fn secret(&self) -> Result<Option<Arc<[u8]>>, String> {
        self.secret_file
            .as_deref()
            .map(|file| self.secret.get(file))
            .transpose()
    }

    pub fn validate(&self, path: &str) -> Vec<ConfigProblem> {
        let mut problems = validate_secret(path, self.secret_file.as_deref());
        problems.extend(self.rate_limit.validate(&format!("{path}.rate_limit")));
        if let Some(hours) = &self.hours {
            problems.extend(hours.validate(&format!("{path}.hours")));
        }
        if let Some(transcript) = &self.transcript {
            problems.extend(transcript.validate(&format!("{path}.transcript")));
        }
        problems
    }
}

/// `[channels.<id>.chat.transcript]`: the chat transcript by mail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptConfig {
    /// The address transcripts are sent from (the channel's transcript address).
    pub from: String,
    /// The name shown in From; the sending mailbox's `company_name` when unset.
    #[serde(default)]
    pub from_name: Option<String>,
    /// The `[outbound.mailboxes.<name>]` whose SMTP server sends transcripts (and whose
    /// Message-ID domain they use): deskgate's SMTP transports belong to mailboxes.
    pub mailbox: String,
    /// The most messages one transcript keeps; later ones are counted, and the mail says how
    /// many were left out.
    #[serde(default = "default_max_messages")]
    pub max_messages: u32,
    /// The most bytes of message text one transcript keeps, likewise.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_max_messages() -> u32 {
    200
}

fn default_max_bytes() -> u64 {
    64 * 1024
}

impl TranscriptConfig {
    /// What the table alone can tell; [`validate_transcripts`] checks its `mailbox`.
    pub fn validate(&self, path: &str) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        problems.check(
            self.from.parse::<lettre::Address>().is_ok(),
            format!("{path}.from"),
            format!("{:?} is not an email address", self.from),
        );
        let name_ok = self
            .from_name
            .as_deref()
            .is_none_or(|n| !n.trim().is_empty() && !n.contains(['\r', '\n']));
        problems.check(
            name_ok,
            format!("{path}.from_name"),
            "must be one non-empty line",
        );
        problems.check(
            self.max_messages > 0,
            format!("{path}.max_messages"),
            "must be > 0",
        );
        problems.check(
            self.max_bytes > 0,
            format!("{path}.max_bytes"),
            "must be > 0",
        );
        problems.into_vec()
    }
}

/// Each chat channel's transcript names a mailbox of `[outbound.mailboxes]` to send through.
pub fn validate_transcripts(
    channels: &std::collections::BTreeMap<String, super::ChannelConfig>,
    mailboxes: &std::collections::BTreeMap<String, super::outbound::MailboxConfig>,
) -> Vec<ConfigProblem> {
    let transcripts = channels.iter().filter_map(|(id, channel)| {
        let transcript = channel.chat.as_ref()?.transcript.as_ref()?;
        Some((id, transcript))
    });
    transcripts
        .filter(|(_, transcript)| !mailboxes.contains_key(&transcript.mailbox))
        .map(|(id, transcript)| ConfigProblem {
            path: format!("channels.{id}.chat.transcript.mailbox"),
            message: format!(
                "names mailbox {:?}, which is not in [outbound.mailboxes] (transcripts are sent \
                 through a mailbox's SMTP server)",
                transcript.mailbox
            ),
        })
        .collect()
}

/// Requests per client address on one public channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per minute from one client address.
    pub per_minute: u32,
    /// Requests one client address may send at once before the sustained rate applies.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_minute: 60,
            burst: 20,
        }
    }
}

impl RateLimitConfig {
    pub fn validate(&self, path: &str) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        for (field, value) in [("per_minute", self.per_minute), ("burst", self.burst)] {
            problems.check(value > 0, format!("{path}.{field}"), "must be > 0");
        }
        problems.into_vec()
    }
}

pub(super) fn validate_secret(path: &str, file: Option<&std::path::Path>) -> Vec<ConfigProblem> {
    file.and_then(|file| read_secret(file).err())
        .map(|message| ConfigProblem {
            path: format!("{path}.secret_file"),
            message,
        })
        .into_iter()
        .collect()
}
