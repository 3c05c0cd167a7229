//! Facebook Messenger webhook items (`object: "page"`): messages, echoes, postbacks,
//! reactions, deliveries, reads, referrals, and everything else as recorded notices.
//!
//! The customer is known by page id + page-scoped id (PSID), a channel-scoped identity
//! ([`identity::messenger`]); the conversation is the same pair. Timestamps are integer milliseconds.

use serde_json::{json, Map, Value};

use super::{from_millis, text_of, Context};
use crate::identity;
use crate::model::{
    Attachment, ChannelEvent, ChannelEventKind, Inbound, MessageKind, Record, ReplyWindow, Sender,
};

/// Messenger's standard messaging window and its human-agent tag window.
pub const REPLY_WINDOW: ReplyWindow = ReplyWindow {
    standard_secs: 24 * 3600,
    human_agent_secs: Some(7 * 24 * 3600),
};

/// The fields every messaging item has; any other names its kind.
const ENVELOPE: [&str; 3] = ["sender", "recipient", "timestamp"];

/// Every item of one `entry`.
pub fn entry(ctx: &Context<'_>, entry: &Value, out: &mut Vec<Record>) {
    let page = text_of(&entry["id"]);
    for item in entry["messaging"].as_array().into_iter().flatten() {
        out.push(item_record(ctx, page.as_deref(), item));
    }
    // Items for threads another app controls (handover protocol): kept, not ours to answer.
    for item in entry["standby"].as_array().into_iter().flatten() {
        let sender = customer(ctx, page.as_deref(), &item["sender"]);
        out.push(ctx.other(
            "standby",
            item,
            sender.clone(),
            thread(page.as_deref(), item),
        ));
    }
    if !entry["messaging"].is_array() && !entry["standby"].is_array() {
        out.push(ctx.other("entry", entry, None, None));
    }
}

fn item_record(ctx: &Context<'_>, page: Option<&str>, item: &Value) -> Record {
    let page = page.or_else(|| item["recipient"]["id"].as_str());
    let message = &item["message"];
    if message.is_object() {
        if message["is_echo"].as_bool() == Some(true) {
            return echo(ctx, page, item).unwrap_or_else(|| ctx.other("message", item, None, None));
        }
        return customer_message(ctx, page, item)
            .unwrap_or_else(|| ctx.other("message", item, None, None));
    }
    let sender = customer(ctx, page, &item["sender"]);
    let thread_key = thread(page, item);
    let timestamp = item["timestamp"].as_i64().unwrap_or_default();
    let psid = item["sender"]["id"].as_str().unwrap_or_default();
    if let (Some(postback), Some(sender)) = (item["postback"].as_object(), sender.clone()) {
        let payload = postback
            .get("payload")
            .and_then(text_of)
            .unwrap_or_default();
        let title = postback.get("title").and_then(text_of);
        let key = format!("postback:{psid}:{timestamp}:{payload}");
        let mut inbound = inbound(
            ctx,
            key,
            thread_key,
            sender,
            title.unwrap_or_default(),
            item,
        );
        inbound.kind = MessageKind::Postback;
        inbound.extra.insert("payload".into(), json!(payload));
        copy(&mut inbound.extra, postback, &["referral", "mid"]);
        return Record::Inbound(Box::new(inbound));
    }
    if let (Some(reaction), Some(sender)) = (item["reaction"].as_object(), sender.clone()) {
        let target = reaction.get("mid").and_then(text_of).unwrap_or_default();
        let action = reaction.get("action").and_then(text_of).unwrap_or_default();
        let key = format!("reaction:{psid}:{target}:{action}:{timestamp}");
        let emoji = reaction.get("emoji").and_then(text_of).unwrap_or_default();
        let mut inbound = inbound(ctx, key, thread_key, sender, emoji, item);
        inbound.kind = MessageKind::Reaction;
        copy(
            &mut inbound.extra,
            reaction,
            &["mid", "action", "emoji", "reaction"],
        );
        return Record::Inbound(Box::new(inbound));
    }
    for (field, status) in [("delivery", "delivered"), ("read", "read")] {
        if let Some(receipt) = item[field].as_object() {
            let watermark = receipt.get("watermark").cloned().unwrap_or_default();
            let mids = receipt.get("mids").and_then(Value::as_array);
            return Record::Event(Box::new(ChannelEvent {
                channel: ctx.channel.to_owned(),
                external_id: format!("{field}:{psid}:{watermark}"),
                kind: ChannelEventKind::DeliveryStatus,
                name: format!("message_{field}"),
                thread_key,
                sender,
                status: Some(status.to_owned()),
                message_ids: mids.into_iter().flatten().filter_map(text_of).collect(),
                detail: item.clone(),
                occurred_at: from_millis(&watermark).or_else(|| from_millis(&item["timestamp"])),
                received_at: ctx.received_at,
            }));
        }
    }
    let name = item
        .as_object()
        .and_then(|fields| {
            fields
                .iter()
                .find(|(k, v)| !ENVELOPE.contains(&k.as_str()) && !v.is_null())
        })
        .map(|(k, _)| k.as_str())
        .unwrap_or("unknown");
    ctx.other(name, item, sender, thread_key)
}

fn customer_message(ctx: &Context<'_>, page: Option<&str>, item: &Value) -> Option<Record> {
    let message = &item["message"];
    let mid = text_of(&message["mid"])?;
    let sender = customer(ctx, page, &item["sender"])?;
    let text = message["text"].as_str().unwrap_or_default().to_owned();
    let mut inbound = inbound(ctx, mid, thread(page, item), sender, text, item);
    attachments(&mut inbound, message);
    if let Some(payload) = message["quick_reply"]["payload"].as_str() {
        inbound.extra.insert("quick_reply".into(), json!(payload));
    }
    if let Some(fields) = message.as_object() {
        copy(
            &mut inbound.extra,
            fields,
            &["reply_to", "referral", "sticker_id"],
        );
    }
    Some(Record::Inbound(Box::new(inbound)))
}

/// The page's own message, echoed: recorded on the customer's (the recipient's) conversation.
fn echo(ctx: &Context<'_>, page: Option<&str>, item: &Value) -> Option<Record> {
    let message = &item["message"];
    let mid = text_of(&message["mid"])?;
    let recipient = customer(ctx, page, &item["recipient"])?;
    let psid = item["recipient"]["id"].as_str()?;
    let thread_key = format!("{}:{psid}", page.unwrap_or_default());
    let text = message["text"].as_str().unwrap_or_default().to_owned();
    let mut inbound = inbound(ctx, mid, Some(thread_key), recipient, text, item);
    inbound.kind = MessageKind::Echo;
    // The page's own message opens no window for the page.
    inbound.reply_window = None;
    attachments(&mut inbound, message);
    if let Some(fields) = message.as_object() {
        copy(&mut inbound.extra, fields, &["app_id", "metadata"]);
    }
    Some(Record::Inbound(Box::new(inbound)))
}

fn inbound(
    ctx: &Context<'_>,
    external_id: String,
    thread_key: Option<String>,
    sender: Sender,
    text: String,
    item: &Value,
) -> Inbound {
    let thread_key = thread_key.unwrap_or_else(|| external_id.clone());
    let mut inbound = Inbound::new(
        ctx.channel,
        external_id,
        thread_key,
        sender,
        text,
        ctx.received_at,
    );
    inbound.sent_at = from_millis(&item["timestamp"]);
    inbound.reply_window = Some(REPLY_WINDOW);
    inbound
}

fn attachments(inbound: &mut Inbound, message: &Value) {
    for attachment in message["attachments"].as_array().into_iter().flatten() {
        let kind = attachment["type"].as_str().unwrap_or("file");
        let payload = &attachment["payload"];
        match kind {
            "location" => {
                let coordinates = &payload["coordinates"];
                inbound.extra.insert("location".into(), coordinates.clone());
            }
            "fallback" => {
                let link = json!({ "title": attachment["title"], "url": attachment["url"] });
                inbound.extra.insert("fallback".into(), link);
            }
            _ => {
                let Some(url) = payload["url"].as_str() else {
                    continue;
                };
                inbound.attachments.push(Attachment {
                    id: url.to_owned(),
                    name: attachment["name"].as_str().map(str::to_owned),
                    content_type: content_type(kind).to_owned(),
                    size: 0,
                });
            }
        }
    }
}

fn content_type(kind: &str) -> &'static str {
    match kind {
        "image" => "image/*",
        "video" => "video/*",
        "audio" => "audio/*",
        _ => "application/octet-stream",
    }
}

fn customer(ctx: &Context<'_>, page: Option<&str>, who: &Value) -> Option<Sender> {
    let psid = text_of(&who["id"])?;
    Some(Sender {
        identities: vec![identity::messenger(
            ctx.channel,
            page.unwrap_or_default(),
            &psid,
        )],
        ..Sender::default()
    })
}

fn thread(page: Option<&str>, item: &Value) -> Option<String> {
    let psid = text_of(&item["sender"]["id"])?;
    Some(format!("{}:{psid}", page.unwrap_or_default()))
}

fn copy(extra: &mut Map<String, Value>, from: &Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(value) = from.get(*key).filter(|v| !v.is_null()) {
            extra.insert((*key).to_owned(), value.clone());
        }
    }
}
