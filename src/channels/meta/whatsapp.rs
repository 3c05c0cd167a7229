//! WhatsApp Business Cloud API webhook items (`object: "whatsapp_business_account"`):
//! customer messages of every type, statuses, echoes of the business's own messages, and
//! template, account, call and preference notices recorded as they came.
//!
//! The customer is known by `wa_id`/`from`, a phone number (E.164), and, since Meta's
//! usernames, by a business-scoped user id (`user_id`/`from_user_id`/`recipient_user_id`); a
//! customer who hides their number behind a username comes with the user id alone. Both
//! become identities of the message (`Customer`). `contacts[].profile.name` names them, or
//! failing that `profile.username`. The conversation is the business number
//! (`phone_number_id`) + the phone, or the user id when there is no phone. Timestamps are
//! strings of seconds.

use serde_json::{json, Map, Value};

use super::{from_secs, text_of, Context};
use crate::identity;
use crate::model::{
    Attachment, ChannelEvent, ChannelEventKind, Identity, Inbound, MessageKind, Record,
    ReplyWindow, Sender,
};

/// WhatsApp's customer service window.
pub const REPLY_WINDOW: ReplyWindow = ReplyWindow {
    standard_secs: 24 * 3600,
    human_agent_secs: None,
};

const MEDIA: [&str; 5] = ["image", "video", "audio", "document", "sticker"];

/// Every change of one `entry`.
pub fn entry(ctx: &Context<'_>, entry: &Value, out: &mut Vec<Record>) {
    let changes = entry["changes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if changes.is_empty() {
        out.push(ctx.other("entry", entry, None, None));
    }
    for change in changes {
        let field = change["field"].as_str().unwrap_or("unknown");
        let value = &change["value"];
        let business = Business {
            account: text_of(&entry["id"]).unwrap_or_default(),
            number: text_of(&value["metadata"]["phone_number_id"]).unwrap_or_default(),
        };
        match field {
            "messages" => messages_change(ctx, &business, value, out),
            "smb_message_echoes" => {
                for echo in value["message_echoes"].as_array().into_iter().flatten() {
                    out.push(echo_record(ctx, &business, echo));
                }
            }
            // Template, account, call, preference and other notices: one record per change.
            _ => out.push(ctx.other(field, change, None, None)),
        }
    }
}

fn messages_change(ctx: &Context<'_>, business: &Business, value: &Value, out: &mut Vec<Record>) {
    let contacts = value["contacts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut known = false;
    for message in value["messages"].as_array().into_iter().flatten() {
        known = true;
        out.push(message_record(ctx, business, contacts, message));
    }
    for status in value["statuses"].as_array().into_iter().flatten() {
        known = true;
        out.push(status_record(ctx, business, status));
    }
    if !known {
        out.push(ctx.other("messages", value, None, None));
    }
}

/// Whose a change is: the WhatsApp Business Account (`entry[].id`), which scopes user ids, and
/// the business number (`metadata.phone_number_id`), which keys conversations.
struct Business {
    account: String,
    number: String,
}

/// The customer of one item: their phone (`wa_id`), their business-scoped user id, or both.
struct Customer {
    phone: Option<String>,
    user_id: Option<String>,
}

impl Customer {
    /// What the conversation is keyed by: the phone, as before usernames, else the user id.
    fn key(&self) -> Option<&str> {
        self.phone.as_deref().or(self.user_id.as_deref())
    }

    fn thread_key(&self, business: &Business) -> Option<String> {
        self.key().map(|key| format!("{}:{key}", business.number))
    }

    /// Both identities, phone first, so contact resolution links them. A `wa_id` that is not a
    /// number (placeholders in examples) stays a channel-scoped identity.
    fn sender(&self, ctx: &Context<'_>, business: &Business, name: Option<String>) -> Sender {
        let phone = self.phone.as_deref().map(|wa_id| {
            identity::whatsapp_id(wa_id).unwrap_or_else(|| Identity::Channel {
                channel: ctx.channel.to_owned(),
                id: wa_id.to_owned(),
            })
        });
        let user = (self.user_id.as_deref())
            .map(|user| identity::whatsapp_user(ctx.channel, &business.account, user));
        Sender {
            name,
            identities: phone.into_iter().chain(user).collect(),
            ..Sender::default()
        }
    }
}

/// The `contacts[]` entry of a message's sender: by phone or user id, or the only one.
fn contact_of<'a>(
    contacts: &'a [Value],
    phone: Option<&str>,
    user: Option<&str>,
) -> Option<&'a Value> {
    let matches = |c: &&Value| {
        (phone.is_some() && c["wa_id"].as_str() == phone)
            || (user.is_some() && c["user_id"].as_str() == user)
    };
    let only = (contacts.len() == 1).then(|| &contacts[0]);
    contacts.iter().find(matches).or(only)
}

/// The profile name, or the username when the customer shows no name.
fn contact_name(contact: Option<&Value>) -> Option<String> {
    let profile = &contact?["profile"];
    [&profile["name"], &profile["username"]]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|n| !n.trim().is_empty())
        .map(str::to_owned)
}

fn message_record(
    ctx: &Context<'_>,
    business: &Business,
    contacts: &[Value],
    message: &Value,
) -> Record {
    let from = text_of(&message["from"]);
    let from_user = text_of(&message["from_user_id"]);
    let contact = contact_of(contacts, from.as_deref(), from_user.as_deref());
    // The contact entry completes what the message leaves out, unless it names someone else.
    let (contact_phone, contact_user) = contact.map_or((None, None), |c| {
        (text_of(&c["wa_id"]), text_of(&c["user_id"]))
    });
    let differs = |given: &Option<String>, listed: &Option<String>| {
        given.is_some() && listed.is_some() && given != listed
    };
    let agrees = !differs(&from, &contact_phone) && !differs(&from_user, &contact_user);
    let customer = Customer {
        phone: from.or(contact_phone.filter(|_| agrees)),
        user_id: from_user.or(contact_user.filter(|_| agrees)),
    };
    let (Some(wamid), Some(thread_key)) = (text_of(&message["id"]), customer.thread_key(business))
    else {
        return ctx.other("message", message, None, None);
    };
    let sender = customer.sender(ctx, business, contact_name(contact));
    let username = contact.and_then(|c| text_of(&c["profile"]["username"]));
    let kind = message["type"].as_str().unwrap_or("unknown");
    if kind == "revoke" || kind == "system" {
        let name = if kind == "revoke" {
            "message_deleted"
        } else {
            "system"
        };
        return Record::Event(Box::new(ChannelEvent {
            channel: ctx.channel.to_owned(),
            external_id: wamid,
            kind: ChannelEventKind::Other,
            name: name.to_owned(),
            thread_key: Some(thread_key),
            sender: Some(sender),
            status: None,
            message_ids: text_of(&message["revoke"]["original_message_id"])
                .into_iter()
                .collect(),
            detail: message.clone(),
            occurred_at: from_secs(&message["timestamp"]),
            received_at: ctx.received_at,
        }));
    }
    let mut inbound = Inbound::new(ctx.channel, wamid, thread_key, sender, "", ctx.received_at);
    inbound.sent_at = from_secs(&message["timestamp"]);
    inbound.reply_window = Some(REPLY_WINDOW);
    if let Some(username) = username {
        inbound.extra.insert("username".into(), json!(username));
    }
    if kind == "edit" {
        let original = text_of(&message["edit"]["original_message_id"]);
        inbound.extra.insert("edit_of".into(), json!(original));
        content(&mut inbound, &message["edit"]["message"]);
    } else {
        content(&mut inbound, message);
    }
    if let Some(fields) = message.as_object() {
        copy(
            &mut inbound.extra,
            fields,
            &["context", "referral", "errors"],
        );
    }
    Record::Inbound(Box::new(inbound))
}

/// Fills text, kind, attachments and extras from a message's typed content.
fn content(inbound: &mut Inbound, message: &Value) {
    let kind = message["type"].as_str().unwrap_or("unknown");
    let body = &message[kind];
    inbound.extra.insert("type".into(), json!(kind));
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match kind {
        "text" => inbound.text = text(&body["body"]),
        _ if MEDIA.contains(&kind) => {
            inbound.text = text(&body["caption"]);
            if let Some(id) = text_of(&body["id"]) {
                inbound.attachments.push(Attachment {
                    id,
                    name: body["filename"].as_str().map(str::to_owned),
                    content_type: body["mime_type"]
                        .as_str()
                        .unwrap_or("application/octet-stream")
                        .to_owned(),
                    size: 0,
                });
            }
            copy_value(&mut inbound.extra, "media", body);
        }
        "location" => {
            let parts = [&body["name"], &body["address"]];
            inbound.text = parts
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            copy_value(&mut inbound.extra, "location", body);
        }
        "contacts" => {
            let names: Vec<String> = body
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"]["formatted_name"].as_str().map(str::to_owned))
                .collect();
            inbound.text = names.join(", ");
            copy_value(&mut inbound.extra, "contacts", body);
        }
        "interactive" => interactive(inbound, body),
        "button" => {
            inbound.kind = MessageKind::Postback;
            inbound.text = text(&body["text"]);
            inbound
                .extra
                .insert("payload".into(), body["payload"].clone());
        }
        "reaction" => {
            inbound.kind = MessageKind::Reaction;
            let emoji = text(&body["emoji"]);
            inbound
                .extra
                .insert("reaction_to".into(), body["message_id"].clone());
            inbound
                .extra
                .insert("removed".into(), json!(emoji.is_empty()));
            inbound.text = emoji;
        }
        "order" => {
            inbound.text = text(&body["text"]);
            copy_value(&mut inbound.extra, "order", body);
        }
        _ => {
            // Unsupported or new types: still a customer message, kept as it came.
            inbound.extra.insert("unsupported".into(), json!(true));
            copy_value(&mut inbound.extra, "content", body);
        }
    }
}

fn interactive(inbound: &mut Inbound, body: &Value) {
    let reply_type = body["type"].as_str().unwrap_or_default();
    let reply = &body[reply_type];
    inbound.kind = MessageKind::Postback;
    inbound
        .extra
        .insert("interactive".into(), json!(reply_type));
    match reply_type {
        "button_reply" | "list_reply" => {
            inbound.text = reply["title"].as_str().unwrap_or_default().to_owned();
            inbound.extra.insert("payload".into(), reply["id"].clone());
            copy_value(&mut inbound.extra, "description", &reply["description"]);
        }
        "nfm_reply" => {
            inbound.text = reply["body"].as_str().unwrap_or_default().to_owned();
            inbound
                .extra
                .insert("response_json".into(), reply["response_json"].clone());
        }
        _ => copy_value(&mut inbound.extra, "content", body),
    }
}

fn status_record(ctx: &Context<'_>, business: &Business, status: &Value) -> Record {
    let (Some(wamid), Some(state)) = (text_of(&status["id"]), text_of(&status["status"])) else {
        return ctx.other("status", status, None, None);
    };
    let recipient = Customer {
        phone: text_of(&status["recipient_id"]),
        user_id: text_of(&status["recipient_user_id"]),
    };
    let known = recipient.key().is_some();
    Record::Event(Box::new(ChannelEvent {
        channel: ctx.channel.to_owned(),
        external_id: format!("{wamid}:{state}"),
        kind: ChannelEventKind::DeliveryStatus,
        name: "statuses".to_owned(),
        thread_key: recipient.thread_key(business),
        sender: known.then(|| recipient.sender(ctx, business, None)),
        status: Some(state.to_lowercase()),
        message_ids: vec![wamid],
        detail: status.clone(),
        occurred_at: from_secs(&status["timestamp"]),
        received_at: ctx.received_at,
    }))
}

/// The business's own message sent from the WhatsApp Business app, echoed: recorded on the
/// customer's conversation as outbound.
fn echo_record(ctx: &Context<'_>, business: &Business, echo: &Value) -> Record {
    let customer = Customer {
        phone: text_of(&echo["to"]),
        user_id: None,
    };
    let (Some(id), Some(thread_key)) = (text_of(&echo["id"]), customer.thread_key(business)) else {
        return ctx.other("message_echo", echo, None, None);
    };
    let sender = customer.sender(ctx, business, None);
    let mut inbound = Inbound::new(ctx.channel, id, thread_key, sender, "", ctx.received_at);
    inbound.kind = MessageKind::Echo;
    inbound.sent_at = from_secs(&echo["timestamp"]);
    content(&mut inbound, echo);
    // `content` may have named it a reaction or postback; it is still the business's echo.
    inbound.kind = MessageKind::Echo;
    Record::Inbound(Box::new(inbound))
}

fn copy_value(extra: &mut Map<String, Value>, key: &str, value: &Value) {
    if !value.is_null() {
        extra.insert(key.to_owned(), value.clone());
    }
}

fn copy(extra: &mut Map<String, Value>, from: &Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(value) = from.get(*key).filter(|v| !v.is_null()) {
            extra.insert((*key).to_owned(), value.clone());
        }
    }
}
