//! `[channels.<id>.chat]`: the website chat widget's backend, and public-endpoint rate limits
//! shared with web forms.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::secret::{read_secret, SecretCell};
use super::ConfigProblem;

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
        problems
    }
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
        let mut problems = Vec::new();
        for (field, value) in [("per_minute", self.per_minute), ("burst", self.burst)] {
            if value == 0 {
                problems.push(ConfigProblem {
                    path: format!("{path}.{field}"),
                    message: "must be > 0".to_owned(),
                });
            }
        }
        problems
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
