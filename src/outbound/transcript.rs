//! Chat transcripts by mail (`[channels.<id>.chat.transcript]`).
//!
//! While a conversation on such a channel is open, deskgate keeps what its transcript needs:
//! each visitor message and each agent reply handed to the widget's backend, with who wrote it
//! and when (the state keeps no message text otherwise). It is bounded by the channel's
//! `max_messages` and `max_bytes`: later lines are only counted, and the mail says how many
//! were left out. In the processor step that closes the conversation, one automatic mail
//! (`chat_transcript` template, `Auto-Submitted: auto-generated`, the usual policy and caps)
//! is queued to the address the visitor gave, and what was kept is dropped in the same atomic
//! write: a replay neither loses nor doubles it. Closing again, or reopening and closing with
//! nothing new, finds nothing kept and sends nothing; a conversation reopened with new
//! messages sends a transcript of the messages since the last one. Erasing the contact, or
//! forgetting the conversation, drops what was kept ([`super::erase`]).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::apply::{conversation_context, new_item, next_message_id, queue, refused, Ctx};
use super::{automatic, compose, EmailPayload, Payload, Purpose, ReplyContext};
use crate::config::{ChannelConfig, TranscriptConfig};
use crate::conversations::Conversation;
use crate::model::{AutomaticKind, AutomaticRequest, Inbound, MessageKind, ReplyRequest};
use crate::store::{keys, StateBatch, StoreError};

/// The template of transcripts.
pub const TEMPLATE: &str = "chat_transcript";

/// A chat channel's transcript settings, compiled.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: TranscriptConfig,
    /// Times in the mail are in the channel's office-hours time zone, else UTC.
    zone: Tz,
}

impl Settings {
    /// The settings of a channel with a `[chat.transcript]` table.
    pub fn of(channel: &ChannelConfig) -> Option<Settings> {
        let chat = channel.chat.as_ref()?;
        let config = chat.transcript.clone()?;
        let zone = (chat.hours.as_ref())
            .and_then(|hours| hours.time_zone.parse().ok())
            .unwrap_or(Tz::UTC);
        Some(Settings { config, zone })
    }
}

/// What is kept of one conversation's transcript so far.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Head {
    messages: u32,
    bytes: u64,
    /// Lines past the bounds, counted only.
    omitted: u32,
}

/// One message of a transcript.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    agent: bool,
    #[serde(default)]
    name: Option<String>,
    at: DateTime<Utc>,
    text: String,
}

/// Keeps a visitor's message (record `seq`) for its conversation's transcript. Called in the
/// step that threads it.
pub fn customer_wrote(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    inbound: &Inbound,
    conversation: &Conversation,
) -> Result<(), StoreError> {
    if inbound.kind != MessageKind::Message {
        return Ok(());
    }
    let line = Line {
        agent: false,
        name: inbound.sender.name.clone(),
        at: inbound.received_at,
        text: inbound.text.clone(),
    };
    keep(ctx, batch, (seq, conversation), line)
}

/// Keeps an agent's reply (record `seq`) handed to the chat widget's backend.
pub(super) fn agent_wrote(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    conversation: &Conversation,
    request: &ReplyRequest,
) -> Result<(), StoreError> {
    let (full, _, _) = compose::agent_names(&request.agent);
    let line = Line {
        agent: true,
        name: Some(full).filter(|name| !name.is_empty()),
        at: request.requested_at,
        text: request.text.clone(),
    };
    keep(ctx, batch, (seq, conversation), line)
}

fn keep(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    (seq, conversation): (u64, &Conversation),
    line: Line,
) -> Result<(), StoreError> {
    let Some(settings) = ctx.planner.transcripts.get(&conversation.channel) else {
        return Ok(());
    };
    let key = keys::transcript(&conversation.id);
    let mut head: Head = batch.get(&key)?.unwrap_or_default();
    let size = line.text.len() as u64;
    let fits = head.messages < settings.config.max_messages
        && head.bytes.saturating_add(size) <= settings.config.max_bytes;
    if fits {
        head.messages += 1;
        head.bytes += size;
        batch.put(keys::transcript_line(&conversation.id, seq), &line);
    } else {
        head.omitted = head.omitted.saturating_add(1);
    }
    batch.put(key, &head);
    Ok(())
}

/// Removes what is kept of a conversation's transcript; returns the lines in order.
fn take(
    batch: &mut StateBatch<'_>,
    conversation: &str,
) -> Result<Option<(Head, Vec<Line>)>, StoreError> {
    let key = keys::transcript(conversation);
    let Some(head) = batch.get::<Head>(&key)? else {
        return Ok(None);
    };
    batch.remove(key);
    let mut lines = Vec::new();
    // Keys end in the big-endian journal seq, and the prefix scan returns keys in order.
    for key in batch.keys_with_prefix(&keys::transcript_lines(conversation))? {
        if let Some(line) = batch.get::<Line>(&key)? {
            lines.push(line);
        }
        batch.remove(key);
    }
    Ok(Some((head, lines)))
}

/// Forgets what is kept of a conversation's transcript (erasure, a forgotten conversation).
pub fn drop_kept(batch: &mut StateBatch<'_>, conversation: &str) -> Result<(), StoreError> {
    take(batch, conversation).map(|_| ())
}

/// A conversation closed in the step applying record `seq` at `at`: queues its transcript to
/// the visitor, when the channel mails transcripts, something was kept since the last one and
/// the visitor gave an email address. What was kept goes either way.
pub fn conversation_closed(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    (seq, at): (u64, DateTime<Utc>),
    conversation_id: &str,
) -> Result<(), StoreError> {
    let Some((head, lines)) = take(batch, conversation_id)? else {
        return Ok(());
    };
    let Some((conversation, context)) = conversation_context(batch, conversation_id)? else {
        return Ok(());
    };
    let Some(settings) = ctx.planner.transcripts.get(&conversation.channel) else {
        return Ok(());
    };
    let Some(to) = context.customer_email.clone() else {
        tracing::debug!(
            conversation = conversation_id,
            "no transcript: no visitor email"
        );
        return Ok(());
    };
    let request = AutomaticRequest {
        idempotency_key: format!("transcript:{seq}:{conversation_id}"),
        kind: AutomaticKind::Notification,
        template: TEMPLATE.to_owned(),
        conversation_id: conversation_id.to_owned(),
        to: Some(to.clone()),
        fields: serde_json::Map::new(),
        requested_at: at,
    };
    if let Some(reason) = automatic::blocked(batch, request.kind, &context, &to)? {
        return automatic::suppress(ctx, batch, &conversation, &request, &to, reason).map(|_| ());
    }
    let id = next_message_id(ctx, batch, &settings.config.mailbox, conversation_id)?;
    let outcome = match compose_mail(ctx, settings, &context, (head, &lines), (to, id)) {
        Ok(mail) => {
            let payload = Payload::Email(Box::new(mail));
            let purpose = Purpose::Transcript;
            let item = new_item(ctx, batch, seq, &conversation, purpose, payload, at)?;
            queue(batch, item)?
        }
        Err(reason) => refused(reason),
    };
    let about = (
        conversation.ticket_id.as_str(),
        conversation.channel.as_str(),
    );
    automatic::announce_refused(ctx, batch, seq, &request, about, outcome).map(|_| ())
}

/// The transcript mail, from the channel's transcript address through its mailbox's server.
fn compose_mail(
    ctx: &Ctx<'_>,
    settings: &Settings,
    context: &ReplyContext,
    (head, lines): (Head, &[Line]),
    (to, message_id): (String, String),
) -> Result<EmailPayload, String> {
    let config = &settings.config;
    let planner = ctx.planner;
    let mailbox = planner.mailboxes.get(&config.mailbox).ok_or_else(|| {
        format!(
            "the transcript's mailbox {:?} is not configured",
            config.mailbox
        )
    })?;
    let language = planner.language(context, Some(mailbox));
    let messages: Vec<_> = lines
        .iter()
        .map(|line| {
            let at = line.at.with_timezone(&settings.zone);
            // A widget may name the visitor on one message only.
            let name = match (&line.name, line.agent) {
                (None, false) => context.customer_name.as_ref(),
                (name, _) => name.as_ref(),
            };
            json!({
                "agent": line.agent, "name": name, "text": line.text,
                "at": at.format("%Y-%m-%d %H:%M").to_string(),
            })
        })
        .collect();
    let mut ticket = json!({ "id": context.ticket_id });
    if let Some(number) = context.ticket_number {
        ticket["number"] = json!(number);
        ticket["tag"] = json!(planner.ticket_tag(number));
    }
    let values = json!({
        "company_name": mailbox.company_name, "customer_name": context.customer_name,
        "customer_address": context.customer_email, "conversation_id": context.conversation_id,
        "ticket": ticket, "time_zone": settings.zone.name(), "messages": messages,
        "omitted": head.omitted,
    });
    let rendered = planner.templates.render(TEMPLATE, language, &values)?;
    let subject = rendered
        .subject
        .ok_or_else(|| format!("template {TEMPLATE:?} has no subject ({TEMPLATE}.subject)"))?;
    Ok(EmailPayload {
        mailbox: config.mailbox.clone(),
        from_name: (config.from_name.clone()).unwrap_or_else(|| mailbox.company_name.clone()),
        from_address: config.from.clone(),
        to,
        subject: compose::tagged(planner, context, subject),
        text: rendered.text,
        html: rendered.html,
        message_id,
        in_reply_to: None,
        references: Vec::new(),
        reply_to: None,
        auto_submitted: Some("auto-generated".to_owned()),
        attachments: Vec::new(),
    })
}
