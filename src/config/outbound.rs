//! What deskgate needs to speak: SMTP transports per team mailbox, the Graph API for Messenger
//! and WhatsApp, chat hand-over, templates, automatic-mail caps and retry bounds.
//!
//! Which channel a conversation is answered on is decided by channel id: a channel listed in a
//! mailbox's `channels` is answered by mail from that mailbox; a channel with a `messenger` or
//! `whatsapp` entry through the Graph API; a channel in `chat_channels` through events.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use super::consent::ConsentMode;

pub use super::language::Language;
use super::{ConfigProblem, Problems};

/// `[outbound]`: everything about sending.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// A directory whose `{name}.subject`, `{name}.txt` and `{name}.html` files replace the
    /// shipped templates of the same name (`ticket_received`, `ticket_closed`, `forward`,
    /// `internal_notification`, `chat_transcript`, the words `from_name`, `reply_subject`) in every language,
    /// or add new ones; files in its `en/` and `fr/` folders do so for that language only.
    pub templates_dir: Option<PathBuf>,
    /// The most automatic mails (acknowledgements, notifications) one recipient gets per hour.
    pub auto_mail_per_recipient_per_hour: u32,
    /// The Graph API base, with its version (tests point it at a loopback server).
    pub graph_api_base_url: String,
    /// Each HTTP call to the Graph API must finish within this time.
    pub graph_timeout_secs: u64,
    /// First retry delay after a transient failure; doubles per attempt, with jitter.
    pub retry_base_ms: u64,
    /// The longest delay between two attempts.
    pub retry_max_secs: u64,
    /// A message still failing transiently after this long is given up (`deskgate.outbound.failed`).
    pub give_up_after_secs: u64,
    /// A permanent SMTP answer (5xx) is tried this many times in all before it counts as failed.
    pub permanent_attempts: u32,
    /// Team mailboxes by name.
    pub mailboxes: BTreeMap<String, MailboxConfig>,
    /// Messenger pages by channel id.
    pub messenger: BTreeMap<String, MessengerConfig>,
    /// WhatsApp business numbers by channel id.
    pub whatsapp: BTreeMap<String, WhatsappConfig>,
    /// Chat channels: agents' replies are handed to the widget's backend as
    /// `deskgate.outbound.chat_message` events.
    pub chat_channels: Vec<String>,
    /// What goes before the ticket number in the subject tag of automatic mail and agents'
    /// replies: `"#"` writes `[#1042]` (osTicket's form), `"Ticket#"` writes `[Ticket#1042]`
    /// (Zammad's). A customer's reply that lost its In-Reply-To and References but keeps the
    /// tag threads into that ticket, only when its sender is a participant and it is no forward.
    pub ticket_tag: String,
    /// The language of automatic mail and of the words deskgate adds (the "from" of a From
    /// name) where neither the customer, the channel (`channels.<id>.language`) nor the
    /// mailbox (`language`) names one: `en` or `fr`.
    pub language: Language,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            templates_dir: None,
            auto_mail_per_recipient_per_hour: 10,
            graph_api_base_url: "https://graph.facebook.com/v21.0".to_owned(),
            graph_timeout_secs: 20,
            retry_base_ms: 1_000,
            retry_max_secs: 300,
            give_up_after_secs: 2 * 24 * 3600,
            permanent_attempts: 3,
            mailboxes: BTreeMap::new(),
            messenger: BTreeMap::new(),
            whatsapp: BTreeMap::new(),
            chat_channels: Vec::new(),
            ticket_tag: "#".to_owned(),
            language: Language::En,
        }
    }
}

/// `[outbound.mailboxes.NAME]`: one team mailbox that mail is sent from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// The address mail is sent from (and customers reply to).
    pub address: String,
    /// The company name shown in From.
    pub company_name: String,
    /// `agent_and_company` ("Ana from Acme") or `company` ("Acme").
    #[serde(default)]
    pub from_name: FromNameMode,
    /// Channel ids whose conversations are answered from this mailbox.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The domain in Message-IDs deskgate mints; defaults to the address's domain.
    #[serde(default)]
    pub message_id_domain: Option<String>,
    /// Appended to agents' replies; `{{ agent_full_name }}`, `{{ agent_first_name }}` and
    /// `{{ agent_last_name }}` are replaced by the sending agent's names.
    #[serde(default)]
    pub signature_text: Option<String>,
    /// The HTML form of the signature, same tokens (HTML-escaped).
    #[serde(default)]
    pub signature_html: Option<String>,
    /// Send the `ticket_received` template when a message opens a ticket on these channels.
    #[serde(default)]
    pub acknowledge_new_tickets: bool,
    /// The template for acknowledgements.
    #[serde(default = "default_ack_template")]
    pub acknowledgement_template: String,
    /// The members each incoming customer mail on this mailbox's channels is forwarded to:
    /// routing users, and every user of routing teams, at their `email`. Never for automatic
    /// mail, bounces, history, a flagged spam sender, the members' own mail or deskgate's.
    #[serde(default)]
    pub forward_to: ForwardTo,
    /// The template of those forwards.
    #[serde(default = "default_forward_template")]
    pub forward_template: String,
    /// The language of this mailbox's mail where the customer and the channel name none;
    /// `outbound.language` when unset.
    #[serde(default)]
    pub language: Option<Language>,
    pub smtp: SmtpConfig,
}

/// `[outbound.mailboxes.NAME.forward_to]`: who gets a copy of each customer mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardTo {
    /// User ids of `[routing.users]`.
    #[serde(default)]
    pub users: Vec<String>,
    /// Team ids of `[routing.teams]`: each user in the team when the mail arrives.
    #[serde(default)]
    pub teams: Vec<String>,
}

impl ForwardTo {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.teams.is_empty()
    }
}

fn default_forward_template() -> String {
    "forward".to_owned()
}

fn default_ack_template() -> String {
    "ticket_received".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromNameMode {
    #[default]
    AgentAndCompany,
    Company,
}

/// `[outbound.mailboxes.NAME.smtp]`: the transport for one mailbox.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults by `tls`: 465 implicit, 587 starttls, 25 plain.
    #[serde(default)]
    pub port: Option<u16>,
    /// `implicit` (TLS from the first byte), `starttls`, or `plain` (loopback only, for tests).
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (never inline), for example under `$CREDENTIALS_DIRECTORY`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The most pooled connections kept open.
    #[serde(default = "default_pool_max")]
    pub pool_max: u32,
    /// A whole send (connect, commands, data) must finish within this time.
    #[serde(default = "default_send_timeout")]
    pub send_timeout_secs: u64,
}

fn default_pool_max() -> u32 {
    4
}

fn default_send_timeout() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    Implicit,
    #[default]
    Starttls,
    Plain,
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Implicit => 465,
            SmtpTls::Starttls => 587,
            SmtpTls::Plain => 25,
        })
    }
}

/// The longest greeting Messenger's welcome screen takes.
pub const GREETING_MAX_CHARS: usize = 160;

/// `[outbound.messenger.CHANNEL]`: a Facebook page answered through the Send API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessengerConfig {
    /// The page id (`POST {graph}/{page_id}/messages`).
    pub page_id: String,
    /// A file holding the page access token.
    pub page_access_token_file: PathBuf,
    /// Sent once after a visitor's first message on the page, when set.
    #[serde(default)]
    pub instant_reply: Option<String>,
    /// The page's greeting on Messenger's welcome screen (at most 160 characters), set through
    /// the Messenger Profile API at start and on reload; removed when this goes.
    #[serde(default)]
    pub greeting: Option<String>,
    /// The instant reply in other languages, by language code (`{ fr = "Merci…" }`): a
    /// customer whose language is one of these gets it instead of `instant_reply`.
    #[serde(default)]
    pub instant_reply_translations: BTreeMap<String, String>,
    /// Look each new customer's name and locale up through the User Profile API (the page
    /// needs Advanced Access to it) before their message is journaled: the name and locale go
    /// on the contact, and the locale chooses the language of automatic messages to them.
    #[serde(default)]
    pub fetch_profile: bool,
    /// A lookup that takes longer is given up: the message is journaled without a profile.
    #[serde(default = "default_fetch_profile_timeout_ms")]
    pub fetch_profile_timeout_ms: u64,
    /// GDPR consent on this page: `off` (default), `implicit` (`consent_text` is sent when a
    /// visitor first writes; writing is consent) or `explicit` (a visitor's messages are held,
    /// opening no ticket, until they tap the `consent_agree_label` quick reply under
    /// `consent_text`).
    #[serde(default)]
    pub consent: ConsentMode,
    /// The consent text (at most 2,000 characters, the Send API's limit); needed unless
    /// `consent` is `off`.
    #[serde(default)]
    pub consent_text: Option<String>,
    /// The version of `consent_text`: bump it when the text changes. A contact who consented to
    /// an older version consents again (explicit: asked again, their messages held meanwhile;
    /// implicit: the new text is sent and recorded at their next message).
    #[serde(default = "super::consent::default_version")]
    pub consent_version: u32,
    /// The quick reply's label (at most 20 characters, Messenger's limit).
    #[serde(default = "super::consent::default_agree_label")]
    pub consent_agree_label: String,
}

fn default_fetch_profile_timeout_ms() -> u64 {
    2_000
}

/// `[outbound.whatsapp.CHANNEL]`: a WhatsApp business number answered through the Cloud API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappConfig {
    /// The business phone number id (`POST {graph}/{phone_number_id}/messages`).
    pub phone_number_id: String,
    /// A file holding the access token.
    pub access_token_file: PathBuf,
}

impl OutboundConfig {
    /// Every problem in `[outbound]`, with its path; `channels` are the configured channel ids.
    pub fn validate<'a>(
        &self,
        channels: impl IntoIterator<Item = &'a String>,
    ) -> Vec<ConfigProblem> {
        let channels: Vec<&String> = channels.into_iter().collect();
        let mut problems = Problems::default();
        self.check_settings(&mut problems);
        let mut routed = self.check_mailboxes(&mut problems);
        self.check_graph_and_chat(&mut problems, &mut routed);
        for (channel, path) in &routed {
            problems.check(
                channels.iter().any(|c| c.as_str() == *channel),
                path.clone(),
                format!("names channel {channel:?}, which is not configured under [channels]"),
            );
        }
        problems.into_vec()
    }

    /// The settings of every send: ticket tag, rate, Graph API base, retries.
    fn check_settings(&self, problems: &mut Problems) {
        problems.check(
            !self.ticket_tag.trim().is_empty()
                && !self
                    .ticket_tag
                    .chars()
                    .any(|c| c == '[' || c == ']' || c.is_whitespace())
                && !self.ticket_tag.ends_with(|c: char| c.is_ascii_digit()),
            "outbound.ticket_tag",
            "must be non-empty, without brackets or spaces, and not end in a digit",
        );
        problems.check(
            self.auto_mail_per_recipient_per_hour > 0,
            "outbound.auto_mail_per_recipient_per_hour",
            "must be > 0",
        );
        problems.check(
            self.graph_api_base_url.starts_with("https://")
                || self.graph_api_base_url.starts_with("http://127.")
                || self.graph_api_base_url.starts_with("http://localhost"),
            "outbound.graph_api_base_url",
            "must be an https URL (plain http only on loopback)",
        );
        problems.check(
            self.retry_base_ms > 0,
            "outbound.retry_base_ms",
            "must be > 0",
        );
        problems.check(
            self.permanent_attempts > 0,
            "outbound.permanent_attempts",
            "must be > 0",
        );
    }

    /// Each mailbox's address and SMTP settings; returns the channels they answer, each with
    /// the path of its route.
    fn check_mailboxes<'s>(&'s self, problems: &mut Problems) -> BTreeMap<&'s str, String> {
        let mut routed: BTreeMap<&str, String> = BTreeMap::new();
        for (name, mailbox) in &self.mailboxes {
            let path = format!("outbound.mailboxes.{name}");
            problems.check(
                mailbox.address.contains('@'),
                format!("{path}.address"),
                "must be an email address",
            );
            problems.check(
                mailbox.smtp.pool_max > 0,
                format!("{path}.smtp.pool_max"),
                "must be > 0",
            );
            problems.check(
                mailbox.smtp.send_timeout_secs > 0,
                format!("{path}.smtp.send_timeout_secs"),
                "must be > 0",
            );
            problems.check(
                mailbox.smtp.tls != SmtpTls::Plain || is_loopback(&mailbox.smtp.host),
                format!("{path}.smtp.tls"),
                "plain (unencrypted) SMTP is allowed only to a loopback host",
            );
            problems.check(
                mailbox.smtp.username.is_some() == mailbox.smtp.password_file.is_some(),
                format!("{path}.smtp"),
                "username and password_file go together",
            );
            if let Some(file) = &mailbox.smtp.password_file {
                if let Err(problem) = super::read_secret_file(file) {
                    problems.push(format!("{path}.smtp.password_file"), problem);
                }
            }
            for channel in &mailbox.channels {
                routed.entry(channel).or_insert_with(|| path.clone());
            }
        }
        routed
    }

    /// Each Messenger page's greeting, translations and profile lookup.
    fn check_messenger(&self, problems: &mut Problems) {
        for (channel, page) in &self.messenger {
            problems.check(
                page.fetch_profile_timeout_ms > 0,
                format!("outbound.messenger.{channel}.fetch_profile_timeout_ms"),
                "must be > 0",
            );
            for (code, text) in &page.instant_reply_translations {
                let path =
                    format!("outbound.messenger.{channel}.instant_reply_translations.{code}");
                let known = Language::ALL.iter().any(|l| l.code() == code);
                problems.check(
                    known,
                    path.clone(),
                    "is not a language deskgate has: en or fr",
                );
                problems.check(!text.trim().is_empty(), path, "must not be empty");
            }
            page.check_consent(&format!("outbound.messenger.{channel}"), problems);
            if let Some(greeting) = &page.greeting {
                let length = greeting.chars().count();
                problems.check(
                    (1..=GREETING_MAX_CHARS).contains(&length),
                    format!("outbound.messenger.{channel}.greeting"),
                    format!(
                        "must be 1 to {GREETING_MAX_CHARS} characters (Messenger's limit), not {length}"
                    ),
                );
            }
        }
    }

    /// Messenger pages, the Graph API's token files, and the routes of Graph and chat
    /// channels (one route per channel), added to `routed`.
    fn check_graph_and_chat<'s>(
        &'s self,
        problems: &mut Problems,
        routed: &mut BTreeMap<&'s str, String>,
    ) {
        self.check_messenger(problems);
        let token_files = self
            .messenger
            .iter()
            .map(|(c, m)| {
                (
                    format!("outbound.messenger.{c}.page_access_token_file"),
                    &m.page_access_token_file,
                )
            })
            .chain(self.whatsapp.iter().map(|(c, w)| {
                (
                    format!("outbound.whatsapp.{c}.access_token_file"),
                    &w.access_token_file,
                )
            }));
        for (path, file) in token_files {
            if let Err(problem) = super::read_secret_file(file) {
                problems.push(path, problem);
            }
        }
        let graph = self.messenger.keys().chain(self.whatsapp.keys());
        for channel in graph.chain(self.chat_channels.iter()) {
            problems.check(
                !routed.contains_key(channel.as_str()),
                format!("outbound: channel {channel}"),
                "is answered by more than one route",
            );
            routed
                .entry(channel)
                .or_insert_with(|| format!("outbound.{channel}"));
        }
    }
}

impl OutboundConfig {
    /// Every mailbox's `forward_to` names users and teams of `[routing]`, users with an email.
    pub fn validate_forwarding(&self, routing: &super::RoutingConfig) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        for (name, mailbox) in &self.mailboxes {
            let path = format!("outbound.mailboxes.{name}.forward_to");
            for (i, user) in mailbox.forward_to.users.iter().enumerate() {
                let message = match routing.users.get(user) {
                    None => format!("names user {user:?}, which is not in [routing.users]"),
                    Some(u) if u.email.is_none() => {
                        format!("names user {user:?}, who has no email to forward to")
                    }
                    Some(_) => continue,
                };
                problems.push(format!("{path}.users[{i}]"), message);
            }
            for (i, team) in mailbox.forward_to.teams.iter().enumerate() {
                problems.check(
                    routing.teams.contains_key(team),
                    format!("{path}.teams[{i}]"),
                    format!("names team {team:?}, which is not in [routing.teams]"),
                );
            }
        }
        problems.into_vec()
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn outbound_problems_are_reported_with_their_paths() {
        let config = Config::parse(
            "[channels.mail]\nkind = \"api\"\n\
             [outbound]\nauto_mail_per_recipient_per_hour = 0\ngraph_api_base_url = \"http://graph.example\"\n\
             chat_channels = [\"mail\", \"ghost\"]\n\
             [outbound.whatsapp.ghost]\nphone_number_id = \"1\"\naccess_token_file = \"/nonexistent/token\"\n\
             [outbound.mailboxes.support]\naddress = \"nobody\"\ncompany_name = \"A\"\nchannels = [\"mail\"]\n\
             [outbound.mailboxes.support.smtp]\nhost = \"smtp.example.com\"\ntls = \"plain\"\nusername = \"u\"\n",
        )
        .unwrap();
        let problems: Vec<String> = config.validate().iter().map(|p| p.to_string()).collect();
        let expected = [
            "outbound.auto_mail_per_recipient_per_hour: must be > 0",
            "outbound.graph_api_base_url: must be an https URL",
            "outbound.mailboxes.support.address: must be an email address",
            "outbound.mailboxes.support.smtp.tls: plain (unencrypted) SMTP is allowed only to a loopback host",
            "outbound.mailboxes.support.smtp: username and password_file go together",
            "outbound: channel mail: is answered by more than one route",
            "outbound.ghost: names channel \"ghost\", which is not configured under [channels]",
            "outbound.whatsapp.ghost.access_token_file: cannot read secret file /nonexistent/token",
            "outbound: channel ghost: is answered by more than one route",
        ];
        for want in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn forward_to_names_known_users_with_email_and_known_teams() {
        let config = Config::parse(
            "[channels.mail]\nkind = \"api\"\n\
             [routing.teams.billing]\nlabel = \"Billing\"\n\
             [routing.users.alice]\nname = \"Alice\"\nemail = \"alice@acme.test\"\n\
             [routing.users.bob]\nname = \"Bob\"\n\
             [outbound.mailboxes.support]\naddress = \"help@acme.test\"\ncompany_name = \"Acme\"\nchannels = [\"mail\"]\n\
             forward_to = { users = [\"alice\", \"bob\", \"zed\"], teams = [\"billing\", \"ghosts\"] }\n\
             [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\ntls = \"plain\"\n",
        )
        .unwrap();
        let problems: Vec<String> = config.validate().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "outbound.mailboxes.support.forward_to.users[1]: names user \"bob\", who has no email to forward to",
                "outbound.mailboxes.support.forward_to.users[2]: names user \"zed\", which is not in [routing.users]",
                "outbound.mailboxes.support.forward_to.teams[1]: names team \"ghosts\", which is not in [routing.teams]",
            ]
        );
    }

    #[test]
    fn instant_reply_translations_name_shipped_languages() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let config = Config::parse(&format!(
            "[channels.fb]\nkind = \"api\"\n\
             [outbound.messenger.fb]\npage_id = \"1\"\npage_access_token_file = {token:?}\n\
             fetch_profile_timeout_ms = 0\n\
             instant_reply_translations = {{ fr = \"Merci\", es = \"Hola\", en = \" \" }}\n"
        ))
        .unwrap();
        let problems: Vec<String> = config.validate().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "outbound.messenger.fb.fetch_profile_timeout_ms: must be > 0",
                "outbound.messenger.fb.instant_reply_translations.en: must not be empty",
                "outbound.messenger.fb.instant_reply_translations.es: is not a language deskgate has: en or fr",
            ]
        );
    }

    #[test]
    fn a_loopback_plain_mailbox_is_valid() {
        let config = Config::parse(
            "[channels.mail]\nkind = \"api\"\n\
             [outbound.mailboxes.support]\naddress = \"help@acme.test\"\ncompany_name = \"Acme\"\nchannels = [\"mail\"]\n\
             [outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"plain\"\n",
        )
        .unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.outbound.mailboxes["support"].smtp.port(), 2525);
    }
}
