//! Control routes for intake: retrying a quarantined input (a mail with the current parser; any
//! other input by applying its journal record again), and downloading an attachment by id.
//!
//! A retry re-reads the raw bytes kept with the quarantine entry, with the channel's current
//! options and the original receive time, so the same retry always yields the same record: a
//! message journaled under its Message-ID (a second retry is a duplicate), which the processor
//! links back to the entry (`retried_as`). A mail that still cannot be read is reported and
//! nothing is journaled.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde_json::json;

use super::error::{ApiError, ErrorBody};
use super::journaled::{IdempotencyKey, JournaledErrors};
use super::routes::AppState;
use crate::channels::email;
use crate::config::ChannelKind;
use crate::model::Quarantined;
use crate::model::{ControlCommand, ControlRecord, Record};
use crate::store::keys;

/// Where a retried message records the entry it came from, in `Inbound.extra`.
pub const RETRY_OF: &str = "quarantine_retry_of";

/// `POST /v1/control/quarantine/{seq}/retry`.
#[utoipa::path(
    post,
    path = "/v1/control/quarantine/{seq}/retry",
    tag = "control",
    params(("seq" = u64, Path, description = "The quarantine entry's journal seq."), IdempotencyKey),
    responses(
        (status = 202, description = "A mail read again and journaled: `status` `journaled`, `journal_seq`, `external_id`, `duplicate`, and the quarantine `entry` with `retried_as`.", body = Object),
        (status = 200, description = "The mail was journaled before (`\"duplicate\": true`); or another input applied again from its journal record: `external_id` and the entry's `retried_as`, `\"duplicate\": true` once applied already.", body = Object),
        (status = 404, description = "No quarantine entry at this seq.", body = ErrorBody),
        (status = 422, description = "Still cannot be read or applied (`still cannot be read: …`, `still cannot be applied: …`); nothing changed.", body = ErrorBody),
        JournaledErrors,
    ),
)]
pub async fn retry_quarantined(
    State(state): State<AppState>,
    Path(seq): Path<u64>,
    headers: http::HeaderMap,
) -> Result<Response, ApiError> {
    let entry: Quarantined = state
        .store
        .state_get(&keys::quarantine(seq))?
        .ok_or_else(|| ApiError::NotFound(format!("no quarantine entry at journal seq {seq}")))?;
    let channel_id = entry.channel.clone().unwrap_or_default();
    let config = state
        .channels
        .get(&channel_id)
        .filter(|c| c.kind == ChannelKind::Email);
    let (Some(config), Some(_)) = (config, entry.raw_blob.as_ref()) else {
        // Not a mail the reader set aside: the record itself is in the journal (a webhook,
        // form, chat or API input, or a mail, that the processor could not apply).
        return retry_record(&state, &headers, seq).await;
    };
    let blob = entry.raw_blob.clone().ok_or_else(|| {
        ApiError::Unprocessable(format!("entry {seq} kept no raw input to retry"))
    })?;
    let blobs = state.blobs.clone();
    let options = config.email_options();
    let at = entry.at;
    let record = tokio::task::spawn_blocking(move || {
        let raw = blobs.get(&blob)?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("blob {blob} is gone"))
        })?;
        email::to_record_with(&channel_id, &raw, at, &blobs, None, &options)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("retry failed: {e}")))?
    .map_err(|e| ApiError::Internal(format!("reading the quarantined input: {e}")))?;
    let mut inbound = match record {
        Record::Inbound(inbound) => inbound,
        Record::Quarantine(again) => {
            return Err(ApiError::Unprocessable(format!(
                "still cannot be read: {}",
                again.reason
            )))
        }
        #[allow(unreachable_patterns)] // other helpers add control record kinds
        _ => return Err(ApiError::Internal("unexpected record".to_owned())),
    };
    inbound.extra.insert(RETRY_OF.to_owned(), json!(seq));
    let external_id = inbound.external_id.clone();
    let applied = super::journaled::journal_and_wait(&state, Record::Inbound(inbound)).await?;
    let (journal_seq, duplicate) = (applied.seq, applied.duplicate);
    let entry: Option<Quarantined> = state.store.state_get(&keys::quarantine(seq))?;
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(json!({
            "status": "journaled",
            "journal_seq": journal_seq,
            "external_id": external_id,
            "duplicate": duplicate,
            "entry": entry,
        })),
    )
        .into_response())
}

/// `GET /v1/control/attachments/{id}`: an attachment's (or a quarantined input's) bytes.
#[utoipa::path(
    get,
    path = "/v1/control/attachments/{id}",
    tag = "control",
    params(("id" = String, Path, description = "A blob id, as events and quarantine entries name it.")),
    responses(
        (status = 200, description = "The bytes, with the content type and file name (`Content-Disposition`) the attachment arrived with; other blobs as `application/octet-stream`.", content(("*/*")), headers(("Content-Disposition" = String, description = "`attachment; filename=…` when the attachment had a name."))),
        (status = 404, description = "No blob with this id.", body = ErrorBody),
    ),
)]
pub async fn attachment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let blobs = state.blobs.clone();
    let lookup = id.clone();
    let (content, description) =
        tokio::task::spawn_blocking(move || (blobs.get(&lookup), blobs.description(&lookup)))
            .await
            .map_err(|e| ApiError::Internal(format!("reading attachment: {e}")))?;
    let content = content
        .map_err(|e| ApiError::Internal(format!("reading attachment: {e}")))?
        .ok_or_else(|| ApiError::NotFound(format!("no attachment {id:?}")))?;
    // The part's own type and file name, when the blob arrived as an attachment.
    let content_type = description
        .as_ref()
        .and_then(|(content_type, _)| header::HeaderValue::from_str(content_type).ok())
        .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
    let mut response = ([(header::CONTENT_TYPE, content_type)], content).into_response();
    if let Some(name) = description.and_then(|(_, name)| name) {
        if let Ok(value) = header::HeaderValue::from_str(&content_disposition(&name)) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

/// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266): an ASCII fallback with quotes and
/// controls replaced, and the exact name percent-encoded.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Has the processor apply a quarantined journal record again, in its place. Each call is a
/// new attempt (a failed one can be tried again after the next fix, unless the caller repeats
/// its `Idempotency-Key`); one that finds the entry applied already answers `duplicate`.
async fn retry_record(
    state: &AppState,
    headers: &http::HeaderMap,
    seq: u64,
) -> Result<Response, ApiError> {
    let record = Record::Control(Box::new(ControlRecord {
        key: super::journaled::idempotency_key(headers)?,
        at: chrono::Utc::now(),
        command: ControlCommand::RetryQuarantined { seq },
    }));
    let control_seq = super::journaled::journal_and_wait(state, record).await?.seq;
    let outcome: crate::model::ControlOutcome =
        super::journaled::outcome(state, control_seq, &keys::control_outcome(control_seq))?;
    super::error::answer_command(outcome)
}
