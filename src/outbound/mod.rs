//! Outbound: acknowledgement and notification mail, forwards of customer mail to a mailbox's
//! members, and agents' replies on every channel.
//!
//! Sending is split in two halves around the journal, like everything else in deskgate:
//! - In the processor ([`apply`], [`observe`]): a journaled request (an agent's reply, an
//!   automatic mail) is checked (route, messaging window, automatic-mail policy), rendered and
//!   stored as an [`OutgoingItem`] with a pending index, in the same atomic step as everything
//!   else. Deterministic: times come from records, ids from the minter.
//! - In the [`sender`] task: it delivers pending items (SMTP with lettre, the Graph API for
//!   Messenger and WhatsApp), retries transient failures with jittered exponential backoff, and
//!   journals every outcome as a [`Record::Outbound`](crate::model::Record) so that
//!   `deskgate.outbound.sent` / `deskgate.outbound.failed` are sequenced like every other
//!   event.
//!
//! Exactly once, as far as providers allow: the idempotency key dedupes requests in the journal;
//! an item leaves the pending index only when its outcome is applied. Before each attempt the
//! sender journals `attempting`; a crash after the provider accepted a message and before the
//! `sent` outcome is flushed resends it once after restart (neither SMTP nor the Graph API can
//! dedupe for us). That window is one round trip plus one journal flush; a resent mail keeps
//! its Message-ID, so mail clients that collapse duplicates by Message-ID show it once.

pub mod apply;
pub mod automatic;
pub mod compose;
pub mod consent;
pub mod erase;
pub mod forward;
pub mod graph;
/// Message-IDs deskgate mints name their conversation; the email channel owns the scheme.
pub mod observe;
pub mod policy;
pub mod profile;
pub mod sender;
pub mod smtp;
pub mod templates;
pub mod transcript;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::outbound::{Language, MailboxConfig, MessengerConfig, WhatsappConfig};
use crate::config::{ChannelConfig, OutboundConfig};
use crate::model::{Attachment, Purpose};
use templates::Templates;

/// How a conversation on a channel is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Email { mailbox: String },
    Messenger,
    Whatsapp,
    Chat,
}

/// The sending configuration compiled for the processor: routes by channel, templates.
pub struct Planner {
    routes: BTreeMap<String, Route>,
    pub(crate) mailboxes: BTreeMap<String, MailboxConfig>,
    pub(crate) messenger: BTreeMap<String, MessengerConfig>,
    pub(crate) whatsapp: BTreeMap<String, WhatsappConfig>,
    pub(crate) templates: Templates,
    /// `outbound.ticket_tag`.
    pub(crate) ticket_tag: String,
    /// `outbound.language`, and each channel's `language` where it has one.
    language: Language,
    channel_languages: BTreeMap<String, Language>,
    /// Chat channels that mail transcripts (`[channels.<id>.chat.transcript]`).
    pub(crate) transcripts: BTreeMap<String, transcript::Settings>,
}

impl Planner {
    /// Compiles `[outbound]`; fails on a template that does not parse.
    pub fn new(config: &OutboundConfig) -> Result<Planner, String> {
        let mut templates = Templates::load(config.templates_dir.as_deref())?;
        let mut routes = BTreeMap::new();
        for (name, mailbox) in &config.mailboxes {
            for channel in &mailbox.channels {
                let route = Route::Email {
                    mailbox: name.clone(),
                };
                routes.insert(channel.clone(), route);
            }
            if let Some(text) = &mailbox.signature_text {
                templates.add(&format!("signature/{name}.txt"), text)?;
            }
            if let Some(html) = &mailbox.signature_html {
                templates.add(&format!("signature/{name}.html"), html)?;
            }
            if mailbox.acknowledge_new_tickets && !templates.has(&mailbox.acknowledgement_template)
            {
                return Err(format!(
                    "outbound.mailboxes.{name}.acknowledgement_template: no template {:?}",
                    mailbox.acknowledgement_template
                ));
            }
            if !mailbox.forward_to.is_empty() && !templates.has(&mailbox.forward_template) {
                return Err(format!(
                    "outbound.mailboxes.{name}.forward_template: no template {:?}",
                    mailbox.forward_template
                ));
            }
        }
        for channel in config.messenger.keys() {
            routes.insert(channel.clone(), Route::Messenger);
        }
        for channel in config.whatsapp.keys() {
            routes.insert(channel.clone(), Route::Whatsapp);
        }
        for channel in &config.chat_channels {
            routes.insert(channel.clone(), Route::Chat);
        }
        Ok(Planner {
            routes,
            mailboxes: config.mailboxes.clone(),
            messenger: config.messenger.clone(),
            whatsapp: config.whatsapp.clone(),
            templates,
            ticket_tag: config.ticket_tag.clone(),
            language: config.language,
            channel_languages: BTreeMap::new(),
            transcripts: BTreeMap::new(),
        })
    }

    /// Takes each channel's `language` (`[channels.<id>]`), which comes before its mailbox's,
    /// and each chat channel's transcript settings.
    pub fn with_channels(mut self, channels: &BTreeMap<String, ChannelConfig>) -> Planner {
        self.channel_languages = channels
            .iter()
            .filter_map(|(id, channel)| Some((id.clone(), channel.language?)))
            .collect();
        self.transcripts = channels
            .iter()
            .filter_map(|(id, channel)| Some((id.clone(), transcript::Settings::of(channel)?)))
            .collect();
        self
    }

    /// The language of what goes to a conversation's customer: theirs, when their channel
    /// told it and deskgate has it; else the [desk's](Planner::desk_language).
    pub fn language(&self, context: &ReplyContext, mailbox: Option<&MailboxConfig>) -> Language {
        context
            .locale
            .as_deref()
            .and_then(Language::of_locale)
            .unwrap_or_else(|| self.desk_language(&context.channel, mailbox))
    }

    /// The language of a channel's mail where the customer's is unknown, and of mail to the
    /// desk's own members: the channel's, the mailbox's, then `outbound.language`.
    pub fn desk_language(&self, channel: &str, mailbox: Option<&MailboxConfig>) -> Language {
        self.channel_languages
            .get(channel)
            .copied()
            .or_else(|| mailbox.and_then(|m| m.language))
            .unwrap_or(self.language)
    }

    /// Sends nothing: every request is refused as unrouted.
    pub fn disabled() -> Planner {
        Planner::new(&OutboundConfig::default()).expect("the shipped templates parse")
    }

    /// The subject tag of ticket `number`: `[#1042]`.
    pub fn ticket_tag(&self, number: u64) -> String {
        format!("[{}{number}]", self.ticket_tag)
    }

    /// The ticket number a subject's tag names, when it carries this desk's tag.
    pub fn tagged_number(&self, subject: &str) -> Option<u64> {
        crate::conversations::email::tagged_number(subject, &self.ticket_tag)
    }

    pub fn route(&self, channel: &str) -> Option<&Route> {
        self.routes.get(channel)
    }
}

/// What deskgate keeps about a conversation to answer on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyContext {
    pub conversation_id: String,
    pub ticket_id: String,
    pub channel: String,
    #[serde(default)]
    pub customer_name: Option<String>,
    /// Where mail to the customer goes (Reply-To when the mail had one).
    #[serde(default)]
    pub customer_email: Option<String>,
    /// The customer's id on a messaging channel (Messenger PSID, WhatsApp wa_id, or a WhatsApp
    /// business-scoped user id when the customer gave no phone).
    #[serde(default)]
    pub channel_user: Option<String>,
    /// `channel_user` is a WhatsApp business-scoped user id, addressed as `recipient`.
    #[serde(default)]
    pub channel_user_is_user_id: bool,
    /// The customer's locale as their channel told it (Messenger's `fr_FR`): the language of
    /// automatic messages to them, when deskgate has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// When the customer last wrote: messaging windows are measured from it.
    #[serde(default)]
    pub last_customer_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub customer_messages: u64,
    /// The customer's last Message-ID and the thread's References, to thread replies.
    #[serde(default)]
    pub last_message_id: Option<String>,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// Why the customer's last mail counts as automatic, when it does.
    #[serde(default)]
    pub automatic: Option<String>,
    /// The number of the conversation's ticket, read from the mirror when a mail is composed
    /// (never stored: a split or merge changes it).
    #[serde(skip)]
    pub ticket_number: Option<u64>,
}

/// A mail ready to hand to SMTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayload {
    pub mailbox: String,
    pub from_name: String,
    pub from_address: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub html: Option<String>,
    /// Without angle brackets.
    pub message_id: String,
    #[serde(default)]
    pub in_reply_to: Option<String>,
    #[serde(default)]
    pub references: Vec<String>,
    /// Where replies go when not to From (a forward's: the mailbox, so they thread back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// `auto-replied` or `auto-generated` for automatic mail.
    #[serde(default)]
    pub auto_submitted: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// What to send, per channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Payload {
    Email(Box<EmailPayload>),
    Messenger {
        channel: String,
        page_id: String,
        psid: String,
        text: String,
        /// `RESPONSE` inside 24 hours, `MESSAGE_TAG` (with `tag`) up to 7 days.
        messaging_type: String,
        #[serde(default)]
        tag: Option<String>,
        /// Quick-reply buttons under the text (the consent request's agree button).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        quick_replies: Vec<QuickReply>,
    },
    Whatsapp {
        channel: String,
        phone_number_id: String,
        /// A phone (`wa_id`), or a business-scoped user id when `to_user_id`.
        to: String,
        text: String,
        /// Sent as the Cloud API's `recipient` (a user id) rather than `to` (a phone).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        to_user_id: bool,
    },
}

/// A Messenger quick reply: a button whose tap comes back as a message carrying `payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    pub title: String,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    /// An attempt was journaled; the provider may have accepted it.
    Sending,
    Sent {
        provider_id: String,
        at: DateTime<Utc>,
    },
    Failed {
        error: String,
        at: DateTime<Utc>,
    },
    Suppressed {
        reason: String,
    },
}

/// One outgoing message, stored under `outgoing/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingItem {
    pub id: String,
    /// The journal record that asked for it.
    pub journal_seq: u64,
    pub conversation_id: String,
    pub ticket_id: String,
    pub channel: String,
    pub purpose: Purpose,
    #[serde(default)]
    pub agent_id: Option<String>,
    pub payload: Payload,
    pub status: ItemStatus,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// Its place in the sender's queue (`outgoing_pending/{queue_seq}`).
    #[serde(default)]
    pub queue_seq: u64,
}

impl OutgoingItem {
    /// The address or user id it goes to.
    pub fn recipient(&self) -> &str {
        match &self.payload {
            Payload::Email(mail) => &mail.to,
            Payload::Messenger { psid, .. } => psid,
            Payload::Whatsapp { to, .. } => to,
        }
    }
}

/// What became of an outbound request, read back by the control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOutcome {
    /// `queued`, `handed_over` (chat), `suppressed` (automatic mail not sent) or `refused`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Why it was refused or suppressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The time a journaled outbound record carries (for quarantine entries and events).
pub fn record_time(record: &crate::model::OutboundRecord) -> DateTime<Utc> {
    use crate::model::OutboundRecord;
    match record {
        OutboundRecord::Reply(r) => r.requested_at,
        OutboundRecord::Automatic(r) => r.requested_at,
        OutboundRecord::Outcome(o) => o.at,
    }
}
