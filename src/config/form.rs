//! `[channels.<id>.form]`: a web form: which submitted field means what, what is required,
//! the honeypot, attachments and deduplication.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::chat::{validate_secret, RateLimitConfig};
use super::secret::SecretCell;
use super::{ConfigProblem, Problems};

/// Web form settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FormConfig {
    /// Which submitted field carries which value.
    pub fields: FormFields,
    /// Submitted field names that must be present and non-empty; a submission missing any
    /// is refused with 422 naming every one.
    pub required: Vec<String>,
    /// Submitted fields the form hides from the visitor (routing hints, campaign tags): kept
    /// on the message and flagged hidden.
    pub hidden: Vec<String>,
    /// A field invisible to people; a submission that fills it is a bot: answered 200 and
    /// dropped (counted in `deskgate_form_honeypot_total`).
    pub honeypot_field: Option<String>,
    /// Ticket properties used when the form does not carry them.
    pub defaults: BTreeMap<String, String>,
    /// Without a submission id, identical submissions less than this many seconds apart are
    /// one (up to twice as far apart, they may be: a submission also matches the window before).
    pub dedupe_window_secs: u64,
    /// The most file fields one submission may carry (multipart).
    pub max_files: usize,
    /// The largest file one field may carry.
    pub max_file_bytes: u64,
    /// A shared secret; when set, every POST must carry
    /// `X-Deskgate-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub secret_file: Option<PathBuf>,
    pub rate_limit: RateLimitConfig,
    #[serde(skip)]
    secret: SecretCell,
}

impl Default for FormConfig {
    fn default() -> Self {
        FormConfig {
            fields: FormFields::default(),
            required: Vec::new(),
            hidden: Vec::new(),
            honeypot_field: None,
            defaults: BTreeMap::new(),
            dedupe_window_secs: 60,
            max_files: 5,
            max_file_bytes: 5 * 1024 * 1024,
            secret_file: None,
            rate_limit: RateLimitConfig::default(),
            secret: SecretCell::default(),
        }
    }
}

/// Submitted field names for each value deskgate understands.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FormFields {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: String,
    /// Becomes the ticket's name (subject).
    pub subject: String,
    /// Becomes the message text.
    pub description: String,
    /// The form's own id for the submission: the idempotency key when present.
    pub submission_id: String,
    /// Ticket properties the form may carry (often as hidden fields).
    pub pipeline: String,
    pub status: String,
    pub priority: String,
    pub category: String,
}

impl Default for FormFields {
    fn default() -> Self {
        let name = |s: &str| s.to_owned();
        FormFields {
            email: name("email"),
            first_name: name("first_name"),
            last_name: name("last_name"),
            phone: name("phone"),
            subject: name("subject"),
            description: name("description"),
            submission_id: name("submission_id"),
            pipeline: name("pipeline"),
            status: name("status"),
            priority: name("priority"),
            category: name("category"),
        }
    }
}

/// The ticket properties a form can set.
pub const TICKET_PROPERTIES: [&str; 4] = ["pipeline", "status", "priority", "category"];

impl FormConfig {
    pub fn secret(&self) -> Result<Option<Arc<[u8]>>, String> {
        self.secret_file
            .as_deref()
            .map(|file| self.secret.get(file))
            .transpose()
    }

    pub fn validate(&self, path: &str) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        problems.extend(validate_secret(path, self.secret_file.as_deref()));
        problems.extend(self.rate_limit.validate(&format!("{path}.rate_limit")));
        for key in self.defaults.keys() {
            problems.check(
                TICKET_PROPERTIES.contains(&key.as_str()),
                format!("{path}.defaults.{key}"),
                format!("must be one of {}", TICKET_PROPERTIES.join(", ")),
            );
        }
        problems.check(
            self.dedupe_window_secs > 0,
            format!("{path}.dedupe_window_secs"),
            "must be > 0",
        );
        problems.into_vec()
    }
}
