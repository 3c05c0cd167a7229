//! `[channels.<id>.imap]`: one IMAP mailbox that an `email` channel pulls.
//!
//! ```toml
//! [channels.support]
//! kind = "email"
//! [channels.support.imap]
//! host = "imap.example.com"
//! user = "support@example.com"
//! password_file = "/run/credentials/deskgate.service/imap-support"
//! after_ingest = { move_to = "Processed" }
//! initial_sync = { since = "2026-01-01" }
//! ```

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Deserialize;
use tokio_rustls::rustls::pki_types as rustls_pki_types;

use super::{ConfigProblem, Problems};

/// One mailbox (one folder of one account) that deskgate pulls.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// The IMAP server's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// The server's port; by default 993 for `tls = "implicit"`, 143 otherwise.
    #[serde(default)]
    pub port: Option<u16>,
    /// `implicit` (TLS from the first byte, port 993), `starttls` (upgrade on port 143), or
    /// `plain` (no encryption: accepted only for a loopback host, for tests).
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of CA certificates to trust besides the public web PKI roots (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The login name.
    pub user: String,
    /// A file holding the password (surrounding whitespace ignored), for example under
    /// `$CREDENTIALS_DIRECTORY`. It is read again at every connect, so rotation needs no restart.
    pub password_file: PathBuf,
    /// The folder to pull.
    #[serde(default = "default_folder")]
    pub folder: String,
    /// What happens on the server once a mail is journaled: `leave`, `mark_seen`, or
    /// `{ move_to = "Folder" }`.
    #[serde(default)]
    pub after_ingest: AfterIngest,
    /// Where the first connect starts: `new` (only mail arriving from now on), `{ since =
    /// "YYYY-MM-DD" }` (mail received on or after that day), or `all` (import the history).
    #[serde(default)]
    pub initial_sync: InitialSync,
    /// IDLE is ended and issued again after this long; servers may drop an IDLE after 29
    /// minutes, so keep it well under that.
    #[serde(default = "default_idle_renew_secs")]
    pub idle_renew_secs: u64,
    /// How often to look for new mail when the server has no IDLE.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// The longest one IMAP command (or one response of a fetch) may take.
    #[serde(default = "default_command_timeout_secs")]
    pub command_timeout_secs: u64,
    /// The most messages one `UID FETCH` asks for.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// The first reconnect delay after a transient error; it doubles up to `backoff_max_ms`,
    /// with jitter.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// The longest reconnect delay after transient errors.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// The delay before trying again after the server refused the login (a wrong password is
    /// not fixed by hammering the server).
    #[serde(default = "default_auth_retry_secs")]
    pub auth_retry_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Implicit,
    Starttls,
    Plain,
}

/// What deskgate does on the server after a mail is durable in the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterIngest {
    /// Change nothing (deskgate fetches with `BODY.PEEK[]`, so the mail stays unread).
    #[default]
    Leave,
    /// Set `\Seen`.
    MarkSeen,
    /// Move the mail to this folder (which must exist).
    MoveTo(String),
}

/// Where the first sync of a mailbox starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialSync {
    /// Only mail arriving after the first connect.
    #[default]
    New,
    /// Mail the server received on or after this day.
    Since(NaiveDate),
    /// Every mail in the folder: an import of history.
    All,
}

fn default_folder() -> String {
    "INBOX".to_owned()
}
fn default_idle_renew_secs() -> u64 {
    10 * 60
}
fn default_poll_interval_secs() -> u64 {
    60
}
fn default_command_timeout_secs() -> u64 {
    60
}
fn default_batch_size() -> u32 {
    500
}
fn default_backoff_min_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    60_000
}
fn default_auth_retry_secs() -> u64 {
    300
}

/// IDLE must be renewed well before the 29 minutes after which RFC 2177 lets a server drop it.
const MAX_IDLE_RENEW_SECS: u64 = 25 * 60;

impl ImapConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Implicit => 993,
            TlsMode::Starttls | TlsMode::Plain => 143,
        })
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }

    /// Reads the password file; the error says which file and why.
    pub fn password(&self) -> Result<String, String> {
        let text = super::read_secret_file(&self.password_file)?;
        let password = text.trim();
        if password.is_empty() {
            return Err(format!("{} is empty", self.password_file.display()));
        }
        Ok(password.to_owned())
    }

    /// The certificates of `ca_file` (none without one); the error says which file and why.
    pub fn extra_roots(&self) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
        use rustls_pki_types::pem::PemObject;
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(certs)
    }

    /// Every problem with this mailbox's settings; `path` is `channels.<id>.imap`.
    pub fn validate(&self, path: &str) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        self.check_connection(path, &mut problems);
        self.check_timing(path, &mut problems);
        problems.into_vec()
    }

    /// Where and how it connects: host, port, TLS, credentials, folders.
    fn check_connection(&self, path: &str, problems: &mut Problems) {
        problems.check(
            !self.host.trim().is_empty(),
            format!("{path}.host"),
            "must not be empty",
        );
        problems.check(
            self.port != Some(0),
            format!("{path}.port"),
            "must be 1-65535",
        );
        problems.check(
            self.tls != TlsMode::Plain || is_loopback(&self.host),
            format!("{path}.tls"),
            format!(
                "\"plain\" sends the password unencrypted and is accepted only for a loopback \
                 host (127.0.0.1, ::1, localhost), not {:?}; use \"implicit\" or \"starttls\"",
                self.host
            ),
        );
        problems.check(
            !self.user.is_empty(),
            format!("{path}.user"),
            "must not be empty",
        );
        if self.ca_file.is_some() {
            let cas = self.extra_roots();
            problems.check(
                cas.is_ok(),
                format!("{path}.ca_file"),
                cas.err().unwrap_or_default(),
            );
        }
        let password = self.password();
        problems.check(
            password.is_ok(),
            format!("{path}.password_file"),
            password.err().unwrap_or_default(),
        );
        problems.check(
            !self.folder.is_empty(),
            format!("{path}.folder"),
            "must not be empty",
        );
        if let AfterIngest::MoveTo(folder) = &self.after_ingest {
            problems.check(
                !folder.is_empty() && folder != &self.folder,
                format!("{path}.after_ingest.move_to"),
                "must name a folder other than the one pulled",
            );
        }
    }

    /// Its timers, batch size and backoff bounds.
    fn check_timing(&self, path: &str, problems: &mut Problems) {
        problems.check(
            (1..=MAX_IDLE_RENEW_SECS).contains(&self.idle_renew_secs),
            format!("{path}.idle_renew_secs"),
            format!("must be 1-{MAX_IDLE_RENEW_SECS} (servers may drop an IDLE after 29 minutes)"),
        );
        problems.check(
            self.poll_interval_secs > 0,
            format!("{path}.poll_interval_secs"),
            "must be > 0",
        );
        problems.check(
            (1..=3600).contains(&self.command_timeout_secs),
            format!("{path}.command_timeout_secs"),
            "must be 1-3600",
        );
        problems.check(
            (1..=10_000).contains(&self.batch_size),
            format!("{path}.batch_size"),
            "must be 1-10000",
        );
        problems.check(
            (10..=60_000).contains(&self.backoff_min_ms),
            format!("{path}.backoff_min_ms"),
            "must be 10-60000",
        );
        problems.check(
            self.backoff_max_ms >= self.backoff_min_ms && self.backoff_max_ms <= 3_600_000,
            format!("{path}.backoff_max_ms"),
            "must be at least backoff_min_ms and at most 3600000",
        );
        problems.check(
            (1..=86_400).contains(&self.auth_retry_secs),
            format!("{path}.auth_retry_secs"),
            "must be 1-86400",
        );
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str, password_file: &std::path::Path) -> ImapConfig {
        let text = format!(
            "host = \"127.0.0.1\"\nuser = \"u\"\npassword_file = \"{}\"\n{extra}",
            password_file.display()
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn options_parse_with_their_defaults_and_forms() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let config = parse("", &secret);
        assert_eq!(config.port(), 993);
        assert_eq!(config.folder, "INBOX");
        assert_eq!(config.after_ingest, AfterIngest::Leave);
        assert_eq!(config.initial_sync, InitialSync::New);
        assert_eq!(config.password().unwrap(), "s3cret");
        assert!(config.validate("c").is_empty());

        let config = parse(
            "tls = \"plain\"\nafter_ingest = { move_to = \"Done\" }\ninitial_sync = { since = \"2026-01-31\" }",
            &secret,
        );
        assert_eq!(config.port(), 143);
        assert_eq!(config.after_ingest, AfterIngest::MoveTo("Done".into()));
        assert_eq!(
            config.initial_sync,
            InitialSync::Since(NaiveDate::from_ymd_opt(2026, 1, 31).unwrap())
        );
        assert!(config.validate("c").is_empty());
        let config = parse(
            "after_ingest = \"mark_seen\"\ninitial_sync = \"all\"",
            &secret,
        );
        assert_eq!(config.after_ingest, AfterIngest::MarkSeen);
        assert_eq!(config.initial_sync, InitialSync::All);
    }

    #[test]
    fn validation_names_every_bad_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = parse(
            "tls = \"plain\"\nidle_renew_secs = 1800\nbatch_size = 0\nbackoff_min_ms = 5000\nbackoff_max_ms = 100",
            &dir.path().join("missing"),
        );
        config.host = "imap.example.com".into();
        let paths: Vec<String> = config
            .validate("channels.s.imap")
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            paths,
            [
                "channels.s.imap.tls",
                "channels.s.imap.password_file",
                "channels.s.imap.idle_renew_secs",
                "channels.s.imap.batch_size",
                "channels.s.imap.backoff_max_ms",
            ]
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret").unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let config = parse(&format!("ca_file = \"{}\"", not_pem.display()), &secret);
        let problems = config.validate("c");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "c.ca_file");
        assert!(problems[0].message.contains("holds no PEM certificate"));
    }

    #[test]
    fn only_loopback_hosts_may_go_plain() {
        for host in ["127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "imap.example.com", "localhost.evil.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
