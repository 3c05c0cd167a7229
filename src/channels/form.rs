//! Web forms: a submission posted as JSON, urlencoded or multipart becomes one message that
//! opens a ticket.
//!
//! The channel's `[form]` table maps submitted field names to what deskgate understands
//! (email, name, phone, subject, description, ticket properties); every other field is kept on
//! the message, hidden ones flagged. File fields become attachments, stored as blobs before the
//! record naming them is journaled. A filled honeypot field marks a bot: accepted and dropped.
//! The idempotency key is the submission id when the form sends one, otherwise a hash of the
//! normalised submission within a short window, so a double click is one ticket.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::meta::signature;
use super::{has_content_type, json_error, ChannelError, HookRequest};
use crate::config::{ChannelConfig, FormConfig, TICKET_PROPERTIES};
use crate::identity;
use crate::model::{Attachment, Inbound, Record, Sender};

/// A file field of a multipart submission.
struct Upload {
    field: String,
    name: Option<String>,
    content_type: String,
    content: Bytes,
}

/// What a submission carried, whatever its encoding.
#[derive(Default)]
struct Submission {
    /// Field values in the order sent; a repeated field keeps every value.
    fields: Vec<(String, String)>,
    files: Vec<Upload>,
}

impl Submission {
    fn value(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, value)| field == name && !value.trim().is_empty())
            .map(|(_, value)| value.trim())
    }
}

pub fn parse(
    config: &ChannelConfig,
    request: &HookRequest<'_>,
) -> Result<Vec<Record>, ChannelError> {
    let default = FormConfig::default();
    let form = config.form.as_ref().unwrap_or(&default);
    if let Some(secret) = form.secret().map_err(ChannelError::Unavailable)? {
        signature::verify(
            request.headers,
            signature::DESKGATE_HEADER,
            &secret,
            &request.body,
        )?;
    }
    let submission = decode(form, request)?;
    if let Some(honeypot) = &form.honeypot_field {
        if submission.value(honeypot).is_some() {
            metrics::counter!("deskgate_form_honeypot_total", "channel" => request.channel_id.to_owned())
                .increment(1);
            tracing::debug!(
                channel = request.channel_id,
                "honeypot filled; submission dropped"
            );
            return Ok(Vec::new());
        }
    }
    let missing: Vec<String> = form
        .required
        .iter()
        .filter(|name| {
            submission.value(name).is_none() && !submission.files.iter().any(|f| &f.field == *name)
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(ChannelError::MissingFields(missing));
    }
    let inbound = to_inbound(form, request, &submission)?;
    Ok(vec![Record::Inbound(Box::new(inbound))])
}

fn decode(form: &FormConfig, request: &HookRequest<'_>) -> Result<Submission, ChannelError> {
    if has_content_type(request.headers, "application/json") {
        let value: Value = serde_json::from_slice(&request.body).map_err(json_error)?;
        let Value::Object(fields) = value else {
            return Err(ChannelError::Malformed(
                "invalid JSON: the submission must be an object of fields".to_owned(),
            ));
        };
        let fields = fields
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (name, text)
            })
            .collect();
        return Ok(Submission {
            fields,
            files: Vec::new(),
        });
    }
    if has_content_type(request.headers, "multipart/form-data") {
        return multipart(form, request);
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body)
        .map_err(|e| ChannelError::Malformed(format!("invalid urlencoded form: {e}")))?;
    Ok(Submission {
        fields,
        files: Vec::new(),
    })
}

/// Reads a multipart body that is already in memory. multer is asynchronous, but with the
/// whole body in hand no step ever waits, so it is driven to completion in place.
fn multipart(form: &FormConfig, request: &HookRequest<'_>) -> Result<Submission, ChannelError> {
    let content_type = request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ChannelError::Malformed(format!("multipart: {e}")))?;
    let body = request.body.clone();
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let malformed = |e: multer::Error| ChannelError::Malformed(format!("multipart: {e}"));
    futures::executor::block_on(async {
        let mut submission = Submission::default();
        while let Some(field) = parts.next_field().await.map_err(malformed)? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(|m| m.essence_str().to_owned());
            if file_name.is_none() {
                let value = field.text().await.map_err(malformed)?;
                submission.fields.push((name, value));
                continue;
            }
            let content = field.bytes().await.map_err(malformed)?;
            if content.is_empty() {
                continue; // an empty file input
            }
            if submission.files.len() >= form.max_files {
                return Err(ChannelError::Invalid(format!(
                    "{name}: at most {} files per submission",
                    form.max_files
                )));
            }
            if content.len() as u64 > form.max_file_bytes {
                return Err(ChannelError::Invalid(format!(
                    "{name}: files may be at most {} bytes",
                    form.max_file_bytes
                )));
            }
            submission.files.push(Upload {
                field: name,
                name: file_name,
                content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
                content,
            });
        }
        Ok(submission)
    })
}

fn to_inbound(
    form: &FormConfig,
    request: &HookRequest<'_>,
    submission: &Submission,
) -> Result<Inbound, ChannelError> {
    let names = &form.fields;
    let mut identities = Vec::new();
    if let Some(raw) = submission.value(&names.email) {
        identities.push(identity::email(raw).ok_or_else(|| {
            ChannelError::Invalid(format!("{}: {raw:?} is not an email address", names.email))
        })?);
    }
    if let Some(raw) = submission.value(&names.phone) {
        identities.push(identity::phone(raw, request.region).ok_or_else(|| {
            ChannelError::Invalid(format!("{}: {raw:?} is not a phone number", names.phone))
        })?);
    }
    let full_name = [&names.first_name, &names.last_name]
        .iter()
        .filter_map(|field| submission.value(field))
        .collect::<Vec<_>>()
        .join(" ");
    let sender = Sender {
        name: (!full_name.is_empty()).then_some(full_name),
        identities,
        spellings: identity::spellings(submission.value(&names.email)),
        ..Sender::default()
    };
    let (external_id, earlier) = match submission.value(&names.submission_id) {
        Some(id) if id.len() <= 512 => (id.to_owned(), None),
        Some(_) => {
            return Err(ChannelError::Invalid(format!(
                "{}: must be at most 512 bytes",
                names.submission_id
            )))
        }
        None => {
            let (key, previous) = content_keys(form, request, submission);
            (key, Some(previous))
        }
    };
    let text = submission.value(&names.description).unwrap_or_default();
    let mut inbound = Inbound::new(
        request.channel_id,
        external_id.clone(),
        external_id,
        sender,
        text,
        request.received_at,
    );
    inbound.subject = submission.value(&names.subject).map(str::to_owned);
    inbound.earlier_external_ids.extend(earlier);
    // Storing files fsyncs: on the daemon's multi-threaded runtime, tell it this worker blocks.
    inbound.attachments = match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| store_files(request, submission))?
        }
        _ => store_files(request, submission)?,
    };
    keep_fields(form, submission, &mut inbound.extra);
    Ok(inbound)
}

/// Ticket properties (from the form or the defaults) and every unmapped field, hidden ones
/// flagged, onto the message's extras.
fn keep_fields(
    form: &FormConfig,
    submission: &Submission,
    extra: &mut serde_json::Map<String, Value>,
) {
    let names = &form.fields;
    let property_fields = [
        &names.pipeline,
        &names.status,
        &names.priority,
        &names.category,
    ];
    let mut ticket = serde_json::Map::new();
    for (property, field) in TICKET_PROPERTIES.iter().zip(property_fields) {
        let value = submission
            .value(field)
            .map(str::to_owned)
            .or_else(|| form.defaults.get(*property).cloned());
        if let Some(value) = value {
            ticket.insert((*property).to_owned(), json!(value));
        }
    }
    let mapped = [
        &names.email,
        &names.phone,
        &names.first_name,
        &names.last_name,
        &names.subject,
        &names.description,
        &names.submission_id,
    ];
    let mut other = BTreeMap::new();
    for (name, value) in &submission.fields {
        if !mapped.contains(&name) && !property_fields.contains(&name) {
            other.insert(name.clone(), value.clone());
        }
    }
    let hidden: Vec<&String> = form
        .hidden
        .iter()
        .filter(|h| other.contains_key(*h))
        .collect();
    if !ticket.is_empty() {
        extra.insert("ticket".into(), Value::Object(ticket));
    }
    if !other.is_empty() {
        extra.insert("fields".into(), json!(other));
    }
    if !hidden.is_empty() {
        extra.insert("hidden_fields".into(), json!(hidden));
    }
}

/// Without a submission id: the same fields and files within one window are one submission.
/// Returns the key in this window and in the one before: a submission whose twin is journaled
/// under either is a duplicate, so one that follows its twin across a window's edge is too.
fn content_keys(
    form: &FormConfig,
    request: &HookRequest<'_>,
    submission: &Submission,
) -> (String, String) {
    let mut fields: Vec<(&str, &str)> = submission
        .fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.trim()))
        .collect();
    fields.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(json!(fields).to_string());
    for file in &submission.files {
        hasher.update(Sha256::digest(&file.content));
    }
    let window = request
        .received_at
        .timestamp()
        .div_euclid(form.dedupe_window_secs.max(1) as i64);
    let hash = hex::encode(hasher.finalize());
    let key = |window: i64| format!("sha256:{}:{window}", &hash[..32]);
    (key(window), key(window - 1))
}

fn store_files(
    request: &HookRequest<'_>,
    submission: &Submission,
) -> Result<Vec<Attachment>, ChannelError> {
    submission
        .files
        .iter()
        .map(|file| {
            let id = request.blobs.put(&file.content).map_err(|e| {
                tracing::error!(error = %e, channel = request.channel_id, "storing a form file failed");
                ChannelError::Unavailable(format!("could not store {}: {e}", file.field))
            })?;
            Ok(Attachment {
                id,
                name: file.name.clone(),
                content_type: file.content_type.clone(),
                size: file.content.len() as u64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use http::HeaderMap;

    use super::*;
    use crate::config::ChannelKind;
    use crate::store::Blobs;

    fn submit(body: &str, at_secs: i64) -> Result<Vec<Record>, ChannelError> {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        let mut form = FormConfig::default();
        form.required = vec!["email".into(), "description".into()];
        let mut config = ChannelConfig::of_kind(ChannelKind::Form);
        config.form = Some(form);
        let request = HookRequest {
            channel_id: "form",
            headers: &headers,
            body: Bytes::from(body.to_owned()),
            received_at: Utc.timestamp_opt(at_secs, 0).unwrap(),
            blobs: &blobs,
            region: Default::default(),
        };
        parse(&config, &request)
    }

    fn key(records: &[Record]) -> String {
        crate::model::DedupeKey::of(&records[0]).external_id
    }

    #[test]
    fn the_same_submission_within_the_window_has_the_same_key() {
        let body = r#"{"email": "a@example.com", "description": "help", "n": 1}"#;
        let reordered = r#"{"n": 1, "description": " help ", "email": "a@example.com"}"#;
        let first = key(&submit(body, 120).unwrap());
        assert_eq!(first, key(&submit(reordered, 150).unwrap()));
        assert_ne!(first, key(&submit(body, 200).unwrap()), "a later window");
        let other = r#"{"email": "a@example.com", "description": "help", "n": 2}"#;
        assert_ne!(first, key(&submit(other, 120).unwrap()));
        // The next window's submission names this window's key as an earlier one, so the
        // journal answers a double click across the edge as a duplicate.
        let Record::Inbound(next) = &submit(body, 190).unwrap()[0] else {
            panic!("a form submission is a message");
        };
        assert_eq!(next.earlier_external_ids, [first]);
    }

    #[test]
    fn every_missing_field_is_named_and_bad_emails_refused() {
        assert_eq!(
            submit(r#"{"description": ""}"#, 0).unwrap_err(),
            ChannelError::MissingFields(vec!["email".into(), "description".into()])
        );
        assert!(matches!(
            submit(r#"{"email": "nope", "description": "x"}"#, 0),
            Err(ChannelError::Invalid(_))
        ));
        assert!(matches!(
            submit(r#"["email"]"#, 0),
            Err(ChannelError::Malformed(_))
        ));
    }
}
