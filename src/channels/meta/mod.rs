//! Meta webhooks: Facebook Messenger and the WhatsApp Business Cloud API.
//!
//! Every POST is signed with the app secret over its raw bytes; the signature is checked before
//! anything is parsed. A payload batches up to 1,000 updates across `entry[]` and each entry's
//! `messaging[]` / `changes[]`: every item becomes its own journal record with its own
//! idempotency key, so a resent or partly overlapping batch has no second effect. Items of
//! kinds deskgate does not understand are recorded as [`ChannelEventKind::Other`], never
//! refused: a refusal would only make Meta retry.

pub mod messenger;
pub mod profile;
pub mod signature;
pub mod whatsapp;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{json_error, ChannelError, HookRequest};
use crate::config::{ChannelConfig, ChannelKind};
use crate::model::{ChannelEvent, ChannelEventKind, Record, Sender};

/// The verification handshake's answer: `Some(challenge)` when the mode and token are right.
pub fn verify_subscription(
    config: &ChannelConfig,
    query: &[(String, String)],
) -> Result<Option<String>, ChannelError> {
    let meta = config
        .meta
        .as_ref()
        .ok_or_else(|| ChannelError::Invalid("this channel has no Meta settings".to_owned()))?;
    let expected = meta.verify_token().map_err(ChannelError::Unavailable)?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.as_str())
    };
    let token_ok = param("hub.verify_token")
        .is_some_and(|given| signature::constant_time_eq(given.as_bytes(), &expected));
    if param("hub.mode") == Some("subscribe") && token_ok {
        Ok(param("hub.challenge").map(str::to_owned))
    } else {
        Ok(None)
    }
}

/// Checks the signature, then turns a webhook payload into one record per item.
pub fn parse(
    config: &ChannelConfig,
    request: &HookRequest<'_>,
) -> Result<Vec<Record>, ChannelError> {
    let meta = config
        .meta
        .as_ref()
        .ok_or_else(|| ChannelError::Invalid("this channel has no Meta settings".to_owned()))?;
    let secret = meta.app_secret().map_err(ChannelError::Unavailable)?;
    signature::verify(
        request.headers,
        signature::META_HEADER,
        &secret,
        &request.body,
    )
    .inspect_err(|error| {
        metrics::counter!("deskgate_webhook_signature_failures_total", "channel" => request.channel_id.to_owned())
            .increment(1);
        tracing::info!(channel = request.channel_id, %error, "webhook signature refused");
    })?;
    let payload = parse_json(&request.body)?;
    let records = records(config.kind, request, &payload);
    for record in &records {
        let kind = super::inspect::item_kind(record);
        metrics::counter!("deskgate_webhook_items_total", "channel" => request.channel_id.to_owned(), "kind" => kind)
            .increment(1);
    }
    Ok(records)
}

/// Records from an already verified payload (also what `deskgate inspect webhook` shows).
pub fn records(kind: ChannelKind, request: &HookRequest<'_>, payload: &Value) -> Vec<Record> {
    let ctx = Context {
        channel: request.channel_id,
        received_at: request.received_at,
    };
    let entries = payload["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if entries.is_empty() {
        // Not a shape we know (or an empty batch): keep it, answer 200, never make Meta retry.
        return vec![ctx.other("payload", payload, None, None)];
    }
    let mut out = Vec::new();
    for entry in entries {
        match kind {
            ChannelKind::Messenger => messenger::entry(&ctx, entry, &mut out),
            _ => whatsapp::entry(&ctx, entry, &mut out),
        }
    }
    out
}

/// The body as JSON; a UTF-8 byte-order mark is tolerated.
pub fn parse_json(body: &[u8]) -> Result<Value, ChannelError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    serde_json::from_slice(body).map_err(json_error)
}

/// What every item of one payload shares.
pub struct Context<'a> {
    pub channel: &'a str,
    pub received_at: DateTime<Utc>,
}

impl Context<'_> {
    /// A non-message item of a kind recorded as it came; its key hashes its content, so the
    /// same item resent is a duplicate.
    pub fn other(
        &self,
        name: &str,
        item: &Value,
        sender: Option<Sender>,
        thread_key: Option<String>,
    ) -> Record {
        let digest = Sha256::digest(format!("{name}\0{item}").as_bytes());
        Record::Event(Box::new(ChannelEvent {
            channel: self.channel.to_owned(),
            external_id: format!("{name}:{}", &hex::encode(digest)[..32]),
            kind: ChannelEventKind::Other,
            name: name.to_owned(),
            thread_key,
            sender,
            status: None,
            message_ids: Vec::new(),
            detail: item.clone(),
            occurred_at: None,
            received_at: self.received_at,
        }))
    }
}

/// A time from integer milliseconds (Messenger).
pub fn from_millis(value: &Value) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(value.as_i64()?).single()
}

/// A time from seconds, as a string or a number (WhatsApp).
pub fn from_secs(value: &Value) -> Option<DateTime<Utc>> {
    let secs = match value {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        other => other.as_i64()?,
    };
    Utc.timestamp_opt(secs, 0).single()
}

/// A string field, or the text of a number (ids come as either).
pub fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
