//! Channel adapters: raw input from one channel in, normalised [`Inbound`] messages out.
//!
//! Adapters know nothing of contacts, tickets or delivery. Each configured channel has one URL,
//! `/hooks/{channel_id}`, and its kind decides which adapter reads the request. The per-client
//! limits of the public channels (chat and forms) are [`crate::ratelimit`]'s.

pub mod api;
pub mod chat;
pub mod email;
pub mod form;
pub mod inspect;
pub mod meta;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::HeaderMap;

use crate::config::{ChannelConfig, ChannelKind};
use crate::model::{Inbound, Record};
use crate::store::Blobs;

/// Why an adapter refused a request. Each maps to one HTTP status in `http::error`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    /// The body is not what the channel's format allows (malformed JSON, a field of the wrong
    /// type); the message names the field.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed but unusable: a required value is empty or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The request's content type is not one the channel reads.
    #[error("content type must be {expected}")]
    UnsupportedMediaType { expected: String },
    /// Keeping the input (an attachment or raw-mail blob) failed; the sender should retry.
    #[error("could not store the input: {0}")]
    Storage(String),
    /// A signature is missing or does not match the body.
    #[error("{0}")]
    Unauthorized(String),
    /// Required fields are missing; every one is named.
    #[error("missing required fields: {}", .0.join(", "))]
    MissingFields(Vec<String>),
    /// The channel cannot check the request now (its secret file is unreadable).
    #[error("{0}")]
    Unavailable(String),
}

/// A JSON syntax or shape error, naming where it is.
pub fn json_error(error: serde_json::Error) -> ChannelError {
    ChannelError::Malformed(format!("invalid JSON: {error}"))
}

/// Reads a whole JSON body into `T`. A type error names its field (`from.email: invalid
/// type…`); a syntax error, which has no meaningful field, says "invalid JSON".
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ChannelError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() || path == "." || path == "?" {
            ChannelError::Malformed(format!("invalid JSON: {inner}"))
        } else {
            ChannelError::Malformed(format!("{path}: {inner}"))
        }
    })?;
    deserializer.end().map_err(json_error)?;
    Ok(value)
}

/// One HTTP request to a channel's hook, with the body already read within its limit.
pub struct HookRequest<'a> {
    pub channel_id: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub received_at: DateTime<Utc>,
    /// Where adapters keep attachment contents and quarantined raw input, durably, before the
    /// record naming them is journaled.
    pub blobs: &'a Blobs,
    /// The region of phone numbers written without a country code.
    pub region: crate::identity::Region,
}

/// The content types a channel kind reads.
pub fn accepted_content_types(kind: ChannelKind) -> &'static [&'static str] {
    match kind {
        ChannelKind::Api | ChannelKind::Messenger | ChannelKind::Whatsapp | ChannelKind::Chat => {
            &["application/json"]
        }
        // MTAs pipe mail with whatever type their HTTP tool defaults to.
        ChannelKind::Email => &["message/rfc822", "application/octet-stream", "text/plain"],
        ChannelKind::Form => &[
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ],
    }
}

/// Refuses a request whose content type the channel does not read, before its body is read.
pub fn check_content_type(config: &ChannelConfig, headers: &HeaderMap) -> Result<(), ChannelError> {
    let accepted = accepted_content_types(config.kind);
    if accepted
        .iter()
        .any(|essence| has_content_type(headers, essence))
    {
        Ok(())
    } else {
        Err(ChannelError::UnsupportedMediaType {
            expected: accepted.join(" or "),
        })
    }
}

/// Turns a hook request into the records it carries (messages, receipts, notices; none for a
/// dropped bot submission). The caller has checked the content type with
/// [`check_content_type`].
pub fn parse(
    config: &ChannelConfig,
    request: &HookRequest<'_>,
) -> Result<Vec<Record>, ChannelError> {
    match config.kind {
        ChannelKind::Api => api::parse(request).map(|inbound| vec![inbound_record(inbound)]),
        ChannelKind::Messenger | ChannelKind::Whatsapp => meta::parse(config, request),
        ChannelKind::Chat => {
            chat::parse(config, request).map(|inbound| vec![inbound_record(inbound)])
        }
        ChannelKind::Form => form::parse(config, request),
        ChannelKind::Email => Err(ChannelError::Malformed(
            "email channels are read with channels::records".to_owned(),
        )),
    }
}

/// Turns a hook request into the journal records it carries. Email is read off the async
/// workers (it stores attachment blobs, which fsyncs) and may yield a quarantine record;
/// every other kind yields its messages.
pub async fn records(
    config: &ChannelConfig,
    request: &HookRequest<'_>,
) -> Result<Vec<Record>, ChannelError> {
    match config.kind {
        ChannelKind::Email => email::hook(config, request)
            .await
            .map(|record| vec![record]),
        _ => parse(config, request),
    }
}

fn inbound_record(inbound: Inbound) -> Record {
    Record::Inbound(Box::new(inbound))
}

/// Whether the request's content type has this essence (`application/json; charset=utf-8`
/// matches `application/json`).
pub fn has_content_type(headers: &HeaderMap, essence: &str) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(essence))
}
