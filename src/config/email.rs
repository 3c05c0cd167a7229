//! Per-channel options for `kind = "email"` channels that are about reading mail, not about
//! fetching it (the IMAP connection has its own sub-table): `[channels.<id>.email]`.

use serde::Deserialize;

use super::{ConfigProblem, Problems};

/// How a mailbox's mail is read into messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// When an agent forwards a customer's mail to the team address, make the customer (the
    /// original sender named in the forward) the message's sender and keep the forwarder in
    /// `extra.forwarded_by`. `false` makes the forwarder the sender.
    pub original_sender_of_forwards: bool,
    /// Mail larger than this many bytes is quarantined (raw bytes kept) instead of parsed.
    pub max_message_bytes: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            original_sender_of_forwards: true,
            max_message_bytes: 25 * 1024 * 1024,
        }
    }
}

impl EmailConfig {
    /// Problems with these options; `path` is the sub-table's dotted path.
    pub fn validate(&self, path: &str) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        problems.check(
            self.max_message_bytes > 0,
            format!("{path}.max_message_bytes"),
            "must be > 0",
        );
        problems.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ChannelKind, Config};

    #[test]
    fn email_options_parse_default_and_validate() {
        let config = Config::parse(
            "[channels.support]\nkind = \"email\"\n\n[channels.support.email]\n\
             original_sender_of_forwards = false\n\n[channels.plain]\nkind = \"email\"\n",
        )
        .unwrap();
        let support = &config.channels["support"];
        assert_eq!(support.kind, ChannelKind::Email);
        assert!(!support.email_options().original_sender_of_forwards);
        assert_eq!(support.email_options().max_message_bytes, 25 * 1024 * 1024);
        assert!(
            config.channels["plain"]
                .email_options()
                .original_sender_of_forwards
        );
        assert!(config.validate().is_empty());

        let wrong = Config::parse(
            "[channels.api]\nkind = \"api\"\n\n[channels.api.email]\nmax_message_bytes = 0\n",
        )
        .unwrap();
        let paths: Vec<_> = wrong.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            ["channels.api.email", "channels.api.email.max_message_bytes"]
        );
        assert!(
            Config::parse("[channels.s]\nkind = \"email\"\n[channels.s.email]\nunknown = 1\n")
                .is_err()
        );
    }
}
