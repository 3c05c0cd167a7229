//! `outbound.messenger.<channel>.consent` and its companions: a Messenger page's GDPR consent
//! settings (see `processor/consent.rs` for what they do) and their validation.

use serde::Deserialize;

use super::outbound::MessengerConfig;
use super::Problems;

/// `outbound.messenger.<channel>.consent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    #[default]
    Off,
    Implicit,
    Explicit,
}

pub(super) fn default_version() -> u32 {
    1
}

pub(super) fn default_agree_label() -> String {
    "I agree".to_owned()
}

/// The longest text the Send API takes, and the longest quick-reply title.
pub const SEND_TEXT_MAX_CHARS: usize = 2000;
pub const QUICK_REPLY_TITLE_MAX_CHARS: usize = 20;

impl MessengerConfig {
    /// Every problem of the consent settings, `path` naming this page's table.
    pub(super) fn check_consent(&self, path: &str, problems: &mut Problems) {
        if self.consent == ConsentMode::Off {
            return;
        }
        let text = self.consent_text.as_deref().unwrap_or_default();
        let length = text.chars().count();
        problems.check(
            !text.trim().is_empty() && length <= SEND_TEXT_MAX_CHARS,
            format!("{path}.consent_text"),
            format!(
                "must be 1 to {SEND_TEXT_MAX_CHARS} characters when consent is not \"off\", not {length}"
            ),
        );
        problems.check(
            self.consent_version >= 1,
            format!("{path}.consent_version"),
            "must be at least 1",
        );
        let label = self.consent_agree_label.chars().count();
        problems.check(
            (1..=QUICK_REPLY_TITLE_MAX_CHARS).contains(&label)
                && !self.consent_agree_label.trim().is_empty(),
            format!("{path}.consent_agree_label"),
            format!(
                "must be 1 to {QUICK_REPLY_TITLE_MAX_CHARS} characters (Messenger's limit), not {label}"
            ),
        );
    }
}
