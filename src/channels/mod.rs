//! Channel adapters: raw input from one channel in, normalised [`Inbound`] messages out.
//!
//! Adapters know nothing of contacts, tickets or delivery. Each configured channel has one URL,
//! `/hooks/{channel_id}`, and its kind decides which adapter reads the request.

pub mod api;
pub mod email;
pub mod identity;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::HeaderMap;

use crate::config::{ChannelConfig, ChannelKind};
use crate::model::Inbound;
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
}

/// The content types a channel kind reads.
pub fn accepted_content_types(kind: ChannelKind) -> &'static [&'static str] {
    match kind {
        ChannelKind::Api => &["application/json"],
        ChannelKind::Email => &["message/rfc822"],
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

/// Turns a hook request into the messages it carries. The caller has checked the content type
/// with [`check_content_type`].
pub fn parse(
    config: &ChannelConfig,
    request: &HookRequest<'_>,
) -> Result<Vec<Inbound>, ChannelError> {
    match config.kind {
        ChannelKind::Api => api::parse(request).map(|inbound| vec![inbound]),
        // A first reading of raw MIME pushed by an MTA; mail is mostly pulled over IMAP.
        ChannelKind::Email => {
            email::mime::parse(request.channel_id, &request.body, request.received_at)
                .map(|inbound| vec![inbound])
                .map_err(|e| ChannelError::Invalid(e.to_string()))
        }
    }
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
