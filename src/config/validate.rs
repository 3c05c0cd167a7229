//! Reading a config file and checking what the types cannot, reporting every problem with its
//! path.

use std::path::Path;

use super::*;

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |path_in_file: &str, message: String| ConfigError {
            file: path.to_owned(),
            problems: vec![ConfigProblem {
                path: path_in_file.to_owned(),
                message,
            }],
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| fail("", format!("cannot read: {e}")))?;
        Config::from_text(path, &text)
    }

    /// Parses and validates a config file's text (`path` names it in the problems).
    pub fn from_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config = Config::parse(text).map_err(|first| {
            let more = parse_all::more_problems(text, &first);
            ConfigError {
                file: path.to_owned(),
                problems: std::iter::once(first).chain(more).collect(),
            }
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: path.to_owned(),
                problems,
            })
        }
    }

    /// Parses TOML text; the error names the field that failed, where serde can tell.
    pub fn parse(text: &str) -> Result<Config, ConfigProblem> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            // toml's message already carries the line and a caret; keep it whole but tidy.
            let message = inner.message().trim().to_owned();
            let location = inner
                .span()
                .map(|span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            ConfigProblem {
                path: if path == "." { String::new() } else { path },
                message: format!("{message}{location}"),
            }
        })
    }

    /// Checks what the types cannot: every problem, not just the first.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut checks = Problems::default();
        self.check_server_and_state(&mut checks);
        self.check_journal_and_events(&mut checks);
        let tokens = self.control.load_tokens();
        let sub_table_problems = self.check_channels(&mut checks);
        let mut problems = checks.into_vec();
        problems.extend(sub_table_problems);
        for (id, channel) in &self.channels {
            problems.extend(channel.validate_kind_options(&format!("channels.{id}")));
        }
        problems.extend(tokens.err().into_iter().flatten());
        problems.extend(sinks::validate(&self.sinks, &self.retention));
        problems.extend(self.routing.validate(&self.channels));
        problems.extend(self.outbound.validate(self.channels.keys()));
        problems.extend(self.outbound.validate_forwarding(&self.routing));
        problems.extend(validate_transcripts(
            &self.channels,
            &self.outbound.mailboxes,
        ));
        self.contacts.validate(&mut problems);
        if self.state.cache_capacity_bytes < 1024 * 1024 {
            problems.push(ConfigProblem {
                path: "state.cache_capacity_bytes".to_owned(),
                message: "must be at least 1048576 (1 MiB)".to_owned(),
            });
        }
        problems
    }

    /// `server.*` and `state.dir`.
    fn check_server_and_state(&self, checks: &mut Problems) {
        checks.check(
            self.server.shutdown_grace_secs > 0,
            "server.shutdown_grace_secs",
            "must be > 0",
        );
        checks.check(
            self.server.header_read_timeout_secs > 0,
            "server.header_read_timeout_secs",
            "must be > 0",
        );
        checks.check(
            self.server.body_read_timeout_secs > 0,
            "server.body_read_timeout_secs",
            "must be > 0",
        );
        checks.check(
            !self.state.dir.as_os_str().is_empty(),
            "state.dir",
            "must not be empty",
        );
    }

    /// `journal.*`, `events.*`, `log.filter` and where the events API listens.
    fn check_journal_and_events(&self, checks: &mut Problems) {
        checks.check(
            self.journal.queue_capacity > 0,
            "journal.queue_capacity",
            "must be > 0",
        );
        checks.check(
            self.journal.max_batch > 0,
            "journal.max_batch",
            "must be > 0",
        );
        checks.check(
            self.journal.ack_timeout_ms > 0,
            "journal.ack_timeout_ms",
            "must be > 0",
        );
        checks.check(
            self.journal.retention_secs >= 60,
            "journal.retention_secs",
            "must be at least 60 (and above the longest resend window of every source)",
        );
        checks.check(
            self.routing.closed_retention_secs == 0
                || self.routing.closed_retention_secs >= self.journal.retention_secs,
            "routing.closed_retention_secs",
            "must be 0 (keep closed tickets) or at least journal.retention_secs, so that erasing \
             a contact still finds the journal records of its forgotten tickets",
        );
        checks.check(
            self.journal.compact_interval_secs > 0,
            "journal.compact_interval_secs",
            "must be > 0",
        );
        checks.check(
            is_valid_name(&self.events.instance),
            "events.instance",
            "must be 1-64 characters of a-z, 0-9, '-' and '_'",
        );
        checks.check(
            self.events.source.as_deref().is_none_or(is_absolute_uri),
            "events.source",
            "must be an absolute URI without query or fragment (https://desk.example.com/deskgate, \
             urn:example:desk)",
        );
        checks.check(self.events.max_limit > 0, "events.max_limit", "must be > 0");
        checks.check(
            self.events.processor_batch > 0,
            "events.processor_batch",
            "must be > 0",
        );
        checks.check(
            tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_ok(),
            "log.filter",
            "is not a valid tracing filter",
        );
        let listen = self.server.listen;
        checks.check(
            self.server
                .control_listen
                .is_none_or(|c| c != listen || listen.port() == 0),
            "server.control_listen",
            "must differ from server.listen (leave it out to serve everything on listen)",
        );
        let events_addr = self.server.control_listen.unwrap_or(self.server.listen);
        checks.check(
            self.events.require_token || events_addr.ip().is_loopback(),
            "events.require_token",
            "may be false only when the events API listens on a loopback address",
        );
    }

    /// Each channel's id and size limit, and which sub-tables its kind takes; returns the
    /// sub-tables' own problems, which come after every channel's.
    fn check_channels(&self, checks: &mut Problems) -> Vec<ConfigProblem> {
        let mut sub_table_problems = Vec::new();
        for (id, channel) in &self.channels {
            checks.check(
                is_valid_name(id),
                format!("channels.{id}"),
                "channel ids must be 1-64 characters of a-z, 0-9, '-' and '_'",
            );
            checks.check(
                channel.max_body_bytes > 0,
                format!("channels.{id}.max_body_bytes"),
                "must be > 0",
            );
            if let Some(imap) = &channel.imap {
                checks.check(
                    channel.kind == ChannelKind::Email,
                    format!("channels.{id}.imap"),
                    "only channels of kind \"email\" have an IMAP mailbox",
                );
                sub_table_problems.extend(imap.validate(&format!("channels.{id}.imap")));
            }
            if let Some(email) = &channel.email {
                checks.check(
                    channel.kind == ChannelKind::Email,
                    format!("channels.{id}.email"),
                    "only channels of kind \"email\" take email options",
                );
                sub_table_problems.extend(email.validate(&format!("channels.{id}.email")));
            }
        }
        sub_table_problems
    }
}
