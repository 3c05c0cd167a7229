//! What every control mutation does: journal a record under the caller's `Idempotency-Key`,
//! wait until the processor has applied it, and read back what the processor decided. One
//! place, so that every control route deduplicates, waits and fails the same way.

use std::time::Duration;

use http::HeaderMap;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorBody};
use super::routes::AppState;
use crate::journal::Appended;
use crate::model::Record;

/// How long a handler waits for the processor before answering 503 (the record stays
/// journaled; a retry with the same key is answered with its outcome).
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The header every journaled mutation reads with [`idempotency_key`], as the OpenAPI document
/// describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // a description only: the handlers read the header with idempotency_key
pub(super) struct IdempotencyKey {
    /// 1-255 visible ASCII characters. A retry with the same key is answered with the first
    /// request's outcome; without the header every request is new.
    #[param(rename = "Idempotency-Key")]
    key: Option<String>,
}

/// What every journaled mutation may answer besides its outcome, as the OpenAPI document
/// describes it.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description only: the answers are ApiErrors
pub(super) enum JournaledErrors {
    /// A malformed body, path id or `Idempotency-Key`, named.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The journal queue is full, or the request is journaled but not applied within 10
    /// seconds: retry with the same `Idempotency-Key`.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    Unavailable(ErrorBody),
}

/// What a control command (journaled, applied by the processor) answers, as the OpenAPI
/// document describes it. A refusal has the same status for the same reason on every command
/// and names why (code `refused` for ticket, directory and conversation commands, `not_found`,
/// `conflict` or `unprocessable` for contact commands).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description only: the processor stores these answers
pub(super) enum CommandAnswers {
    /// Applied: a JSON object of what the processor reports (the ids, and what changed).
    #[response(status = 200)]
    Applied(serde_json::Value),
    /// A malformed body, path id or `Idempotency-Key`, named.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No such ticket, conversation, contact, user or team.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The command contradicts the state (a merge with itself, a ticket already merged).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// A value the command cannot use (an unknown status or pipeline, an id that is not
    /// allowed).
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// The journal queue is full, or the command is journaled but not applied within 10
    /// seconds: retry with the same `Idempotency-Key`.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    Unavailable(ErrorBody),
}

/// The caller's `Idempotency-Key`, or a fresh UUID (then a retry is a new request).
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(value) => value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|key| !key.is_empty() && key.len() <= 255)
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "Idempotency-Key: must be 1-255 visible ASCII characters".to_owned(),
                )
            }),
    }
}

/// A record journaled and applied.
pub(super) struct Applied {
    pub seq: u64,
    /// The key was journaled before: this is the first request's outcome.
    pub duplicate: bool,
}

/// Journals `record` and waits until the processor has applied it.
pub(super) async fn journal_and_wait(
    state: &AppState,
    record: Record,
) -> Result<Applied, ApiError> {
    let (seq, duplicate) = match state.journal.append(record).await? {
        Appended::New { seq } => (seq, false),
        Appended::Duplicate { seq } => (seq, true),
    };
    let mut position = state.position.clone();
    let applied = tokio::time::timeout(APPLY_TIMEOUT, position.wait_for(|p| p.cursor >= seq));
    if !matches!(applied.await, Ok(Ok(_))) {
        return Err(ApiError::Unavailable {
            message: format!(
                "the request is journaled (seq {seq}) but not applied yet; retry with the same Idempotency-Key"
            ),
            retry_after_secs: 1,
        });
    }
    Ok(Applied { seq, duplicate })
}

/// What the processor stored under `key` for the record at `seq`.
pub(super) fn outcome<T: DeserializeOwned>(
    state: &AppState,
    seq: u64,
    key: &[u8],
) -> Result<T, ApiError> {
    state.store.state_get(key)?.ok_or_else(|| {
        ApiError::Internal(format!(
            "the request (seq {seq}) was applied without an outcome; see the quarantine"
        ))
    })
}

/// Parses a JSON request body; the error names the field that failed.
pub(super) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "this endpoint needs a JSON object body".to_owned(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            ApiError::BadRequest(format!("body: {inner}"))
        } else {
            ApiError::BadRequest(format!("{path}: {inner}"))
        }
    })
}
