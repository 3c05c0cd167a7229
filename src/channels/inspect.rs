//! What the pipeline would record from one payload, for `deskgate inspect webhook` and for the
//! per-item answers of a hook: one summary per record.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{meta, ChannelError, HookRequest};
use crate::config::{ChannelConfig, ChannelKind};
use crate::model::{ChannelEventKind, MessageKind, Record};

/// The item kind a record stands for: `message`, `echo`, `postback`, `reaction`,
/// `delivery_status`, `mail` (a mail set aside unread, quarantined) or `other`.
pub fn item_kind(record: &Record) -> &'static str {
    match record {
        Record::Inbound(inbound) => match inbound.kind {
            MessageKind::Message => "message",
            MessageKind::Echo => "echo",
            MessageKind::Postback => "postback",
            MessageKind::Reaction => "reaction",
        },
        Record::Event(event) => match event.kind {
            ChannelEventKind::DeliveryStatus => "delivery_status",
            ChannelEventKind::Other => "other",
        },
        // Only the mail reader sets input aside at the door (unreadable mail, kept raw).
        Record::Quarantine(_) => "mail",
        Record::Control(_)
        | Record::Outbound(_)
        | Record::Contact(_)
        | Record::SinkDeadLettered(_)
        | Record::SinkDisabled(_) => "other",
    }
}

/// A record as a JSON summary.
pub fn describe(record: &Record) -> Value {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let kind = item_kind(record);
    match record {
        Record::Inbound(inbound) => json!({
            "kind": kind,
            "external_id": inbound.external_id,
            "thread_key": inbound.thread_key,
            "sender": inbound.sender.identities.first(),
            "sender_name": inbound.sender.name,
            "text": inbound.text,
            "attachments": inbound.attachments,
            "extra": inbound.extra,
            "timestamp": time(inbound.sent_at.unwrap_or(inbound.received_at)),
        }),
        Record::Event(event) => json!({
            "kind": kind,
            "name": event.name,
            "external_id": event.external_id,
            "thread_key": event.thread_key,
            "sender": event.sender.as_ref().and_then(|s| s.identities.first()),
            "status": event.status,
            "message_ids": event.message_ids,
            "text": Value::Null,
            "attachments": [],
            "timestamp": time(event.occurred_at.unwrap_or(event.received_at)),
        }),
        Record::Control(control) => json!({
            "kind": kind,
            "external_id": control.key,
        }),
        Record::Contact(control) => json!({
            "kind": kind,
            "external_id": control.key,
        }),
        Record::Outbound(outbound) => json!({
            "kind": kind,
            "external_id": outbound.dedupe_key().external_id,
        }),
        Record::SinkDeadLettered(dead) => json!({
            "kind": kind,
            "external_id": dead.dedupe_key().external_id,
        }),
        Record::SinkDisabled(disabled) => json!({
            "kind": kind,
            "external_id": disabled.dedupe_key().external_id,
        }),
        Record::Quarantine(input) => json!({
            "kind": kind,
            "external_id": input.external_id,
            "reason": input.reason,
            "text": Value::Null,
            "attachments": [],
            "timestamp": time(input.received_at),
        }),
    }
}

/// The records a payload would produce on a channel of `kind`, without checking signatures
/// (the file is the caller's own).
pub fn inspect(
    kind: ChannelKind,
    body: bytes::Bytes,
    blobs: &crate::store::Blobs,
) -> Result<Vec<Value>, ChannelError> {
    let channel_id = format!("{kind:?}").to_lowercase();
    let mut headers = http::HeaderMap::new();
    let json_like = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let content_type = if json_like || kind != ChannelKind::Form {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    let request = HookRequest {
        channel_id: &channel_id,
        headers: &headers,
        body: body.clone(),
        received_at: Utc::now(),
        blobs,
        region: Default::default(),
    };
    let records = match kind {
        ChannelKind::Messenger | ChannelKind::Whatsapp => {
            let payload = meta::parse_json(&body)?;
            meta::records(kind, &request, &payload)
        }
        _ => {
            let mut config = ChannelConfig::of_kind(kind);
            config.max_body_bytes = u64::MAX;
            super::parse(&config, &request)?
        }
    };
    Ok(records.iter().map(describe).collect())
}
