//! Messenger (Send API) and WhatsApp (Cloud API messages endpoint) through Meta's Graph API.
//!
//! Both are `POST {base}/{id}/messages` with the token as a bearer header. Meta answers errors
//! as `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`; the code decides
//! whether retrying can help.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::sender::Failure;
use super::Payload;
use crate::config::OutboundConfig;

pub struct Graph {
    client: reqwest::Client,
    base: String,
    /// Tokens by channel id.
    tokens: BTreeMap<String, String>,
}

impl Graph {
    /// Reads every token file now, so a missing one stops start-up.
    pub fn new(config: &OutboundConfig) -> Result<Graph, String> {
        let mut tokens = BTreeMap::new();
        let files = config
            .messenger
            .iter()
            .map(|(c, m)| {
                (
                    c,
                    "messenger",
                    "page_access_token_file",
                    &m.page_access_token_file,
                )
            })
            .chain(
                config
                    .whatsapp
                    .iter()
                    .map(|(c, w)| (c, "whatsapp", "access_token_file", &w.access_token_file)),
            );
        for (channel, table, field, file) in files {
            let token = crate::config::read_secret_file(file)
                .map_err(|e| format!("outbound.{table}.{channel}.{field}: {e}"))?;
            tokens.insert(channel.clone(), token.trim().to_owned());
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.graph_timeout_secs))
            .build()
            .map_err(|e| format!("building the Graph API client: {e}"))?;
        Ok(Graph {
            client,
            base: config.graph_api_base_url.trim_end_matches('/').to_owned(),
            tokens,
        })
    }

    /// Sends a Messenger or WhatsApp payload; returns Meta's message id.
    pub async fn send(&self, payload: &Payload) -> Result<String, Failure> {
        let (channel, node, body) = match payload {
            Payload::Messenger {
                channel,
                page_id,
                psid,
                text,
                messaging_type,
                tag,
                quick_replies,
            } => {
                let mut body = json!({
                    "recipient": { "id": psid },
                    "messaging_type": messaging_type,
                    "message": { "text": text },
                });
                if let Some(tag) = tag {
                    body["tag"] = json!(tag);
                }
                if !quick_replies.is_empty() {
                    let buttons: Vec<Value> = quick_replies
                        .iter()
                        .map(|q| json!({ "content_type": "text", "title": q.title, "payload": q.payload }))
                        .collect();
                    body["message"]["quick_replies"] = json!(buttons);
                }
                (channel, page_id, body)
            }
            Payload::Whatsapp {
                channel,
                phone_number_id,
                to,
                text,
                to_user_id,
            } => {
                // A phone goes in `to`; a business-scoped user id in `recipient`.
                let field = if *to_user_id { "recipient" } else { "to" };
                let mut body = json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "type": "text",
                    "text": { "preview_url": false, "body": text },
                });
                body[field] = json!(to);
                (channel, phone_number_id, body)
            }
            Payload::Email(_) => {
                return Err(Failure::Permanent(
                    "an email is not sent through Graph".into(),
                ))
            }
        };
        let url = format!("{}/{node}/messages", self.base);
        let answer = self
            .call(channel, self.client.post(&url).json(&body))
            .await?;
        let id = answer["message_id"]
            .as_str()
            .or_else(|| answer["messages"][0]["id"].as_str());
        id.map(str::to_owned).ok_or_else(|| {
            Failure::Permanent(format!(
                "Graph API accepted the message but gave no id: {answer}"
            ))
        })
    }

    /// Sets (`Some`) or removes (`None`) a page's greeting through the Messenger Profile API
    /// (`{base}/me/messenger_profile` with the page's token).
    pub async fn set_greeting(&self, channel: &str, text: Option<&str>) -> Result<(), Failure> {
        let url = format!("{}/me/messenger_profile", self.base);
        let request = match text {
            Some(text) => self
                .client
                .post(&url)
                .json(&json!({ "greeting": [{ "locale": "default", "text": text }] })),
            None => self
                .client
                .delete(&url)
                .json(&json!({ "fields": ["greeting"] })),
        };
        let answer = self.call(channel, request).await?;
        if answer["result"] == "success" {
            return Ok(());
        }
        Err(Failure::Permanent(format!(
            "Graph API answered the profile call without success: {answer}"
        )))
    }

    /// A Messenger customer's profile through the User Profile API
    /// (`GET {base}/{psid}?fields=first_name,last_name,locale` with the page's token).
    pub async fn user_profile(&self, channel: &str, psid: &str) -> Result<Value, Failure> {
        let url = format!("{}/{psid}", self.base);
        let request = self
            .client
            .get(&url)
            .query(&[("fields", "first_name,last_name,locale")]);
        self.call(channel, request).await
    }

    /// Sends one call with `channel`'s token; a success's JSON answer, or what the failure is.
    async fn call(
        &self,
        channel: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, Failure> {
        let token = self
            .tokens
            .get(channel)
            .ok_or_else(|| Failure::Permanent(format!("no Graph token for channel {channel:?}")))?;
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("Graph API unreachable: {e}")))?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| {
            Failure::Transient(format!("Graph API answered {status} without JSON: {e}"))
        })?;
        if status.is_success() {
            return Ok(answer);
        }
        Err(classify(status.as_u16(), &answer["error"]))
    }
}

/// Whether a Graph error may pass by itself (rate limits, outages) or never will (a closed
/// window, a bad recipient, a bad token).
pub fn classify(status: u16, error: &Value) -> Failure {
    let code = error["code"].as_i64().unwrap_or_default();
    let subcode = error["error_subcode"].as_i64().unwrap_or_default();
    let message = error["message"].as_str().unwrap_or("no message");
    let detail = format!("Graph API error {code}/{subcode} (HTTP {status}): {message}");
    let window_closed =
        matches!((code, subcode), (10, 2018278) | (10, 2018065)) || code == 131047 || code == 551;
    if window_closed {
        return Failure::Permanent(format!("the messaging window is closed: {detail}"));
    }
    // 1/2: temporary; 4/17/32/613/80006/80007/130429/131056: rate limits.
    let transient = status >= 500
        || status == 429
        || matches!(
            code,
            1 | 2 | 4 | 17 | 32 | 613 | 80006 | 80007 | 130429 | 131056
        )
        || error["is_transient"].as_bool() == Some(true);
    if transient {
        Failure::Transient(detail)
    } else {
        Failure::Permanent(detail)
    }
}
