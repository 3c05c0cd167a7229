//! Which per-kind sub-tables a channel of each kind needs or may have.

use super::{ChannelConfig, ChannelKind, ConfigProblem, Problems};

impl ChannelConfig {
    /// Problems with the kind-specific sub-tables of the channel at `path`.
    pub fn validate_kind_options(&self, path: &str) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        let is_meta = matches!(self.kind, ChannelKind::Messenger | ChannelKind::Whatsapp);
        let misplaced = format!("is not an option of kind {:?}", self.kind).to_lowercase();
        for (table, present, allowed) in [
            ("meta", self.meta.is_some(), is_meta),
            ("chat", self.chat.is_some(), self.kind == ChannelKind::Chat),
            ("form", self.form.is_some(), self.kind == ChannelKind::Form),
        ] {
            problems.check(!present || allowed, format!("{path}.{table}"), &misplaced);
        }
        problems.check(
            !is_meta || self.meta.is_some(),
            format!("{path}.meta"),
            "is required for Messenger and WhatsApp channels (app_secret_file, \
             verify_token_file)",
        );
        if let Some(meta) = &self.meta {
            problems.extend(meta.validate(&format!("{path}.meta")));
        }
        if let Some(chat) = &self.chat {
            problems.extend(chat.validate(&format!("{path}.chat")));
        }
        if let Some(form) = &self.form {
            problems.extend(form.validate(&format!("{path}.form")));
        }
        problems.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn kind_tables_are_checked_with_their_paths() {
        let config = Config::parse(
            r#"
            [channels.fb]
            kind = "messenger"
            [channels.wa]
            kind = "whatsapp"
            meta = { app_secret_file = "/nonexistent/secret", verify_token_file = "/nonexistent/token" }
            [channels.web]
            kind = "form"
            chat = {}
            form = { defaults = { colour = "red" }, dedupe_window_secs = 0 }
            [channels.talk]
            kind = "chat"
            chat = { rate_limit = { per_minute = 0 } }
            "#,
        )
        .expect("parses");
        let problems: Vec<String> = config.validate().iter().map(|p| p.path.clone()).collect();
        assert_eq!(
            problems,
            [
                "channels.fb.meta",
                "channels.talk.chat.rate_limit.per_minute",
                "channels.wa.meta.app_secret_file",
                "channels.wa.meta.verify_token_file",
                "channels.web.chat",
                "channels.web.form.defaults.colour",
                "channels.web.form.dedupe_window_secs",
            ]
        );
    }
}
