//! Which per-kind sub-tables a channel of each kind needs or may have.

use super::{ChannelConfig, ChannelKind, ConfigProblem};

impl ChannelConfig {
    /// Problems with the kind-specific sub-tables of the channel at `path`.
    pub fn validate_kind_options(&self, path: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut misplaced = |table: &str, present: bool, allowed: bool| {
            if present && !allowed {
                problems.push(ConfigProblem {
                    path: format!("{path}.{table}"),
                    message: format!("is not an option of kind {:?}", self.kind).to_lowercase(),
                });
            }
        };
        let is_meta = matches!(self.kind, ChannelKind::Messenger | ChannelKind::Whatsapp);
        misplaced("meta", self.meta.is_some(), is_meta);
        misplaced("chat", self.chat.is_some(), self.kind == ChannelKind::Chat);
        misplaced("form", self.form.is_some(), self.kind == ChannelKind::Form);
        if is_meta && self.meta.is_none() {
            problems.push(ConfigProblem {
                path: format!("{path}.meta"),
                message: "is required for Messenger and WhatsApp channels (app_secret_file, \
                          verify_token_file)"
                    .to_owned(),
            });
        }
        if let Some(meta) = &self.meta {
            problems.extend(meta.validate(&format!("{path}.meta")));
        }
        if let Some(chat) = &self.chat {
            problems.extend(chat.validate(&format!("{path}.chat")));
        }
        if let Some(form) = &self.form {
            problems.extend(form.validate(&format!("{path}.form")));
        }
        problems
    }
}
