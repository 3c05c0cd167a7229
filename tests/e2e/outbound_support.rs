//! Shared by the outbound tests: mail header and body readers, the corpus location, and a
//! control API client (the real SMTP server is `test_kit::smtpd`).

use std::path::Path;

use serde_json::Value;

pub const TOKEN: &str = "outbound-test-token-0123456789";

/// One header of a raw mail, unfolded, or `None`.
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let head = head
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let prefix = format!("{}:", name.to_lowercase());
    unfolded
        .lines()
        .find(|l| l.to_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
}

/// The plain-text body of a mail, decoded.
pub fn text_body(raw: &[u8]) -> String {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    message.body_text(0).unwrap_or_default().into_owned()
}

pub fn html_body(raw: &[u8]) -> Option<String> {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    message.body_html(0).map(|h| h.into_owned())
}

/// Writes the control token file and returns the `[control]` table naming it.
pub fn control_toml(dir: &Path) -> String {
    let path = dir.join("control-token");
    std::fs::write(&path, TOKEN).unwrap();
    format!("[control]\ntoken_files = [\"{}\"]\n\n", path.display())
}

pub async fn control_post(
    client: &reqwest::Client,
    url: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = client.post(url).bearer_auth(TOKEN).json(body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

pub fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}
