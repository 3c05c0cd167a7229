//! Control API routes for sending: an agent's reply on a conversation, an automatic mail, and
//! the state of one outgoing message.
//!
//! A send request is journaled (deduplicated on the `Idempotency-Key` header, else a fresh
//! UUID), then the handler waits until the processor has applied it and answers with what the
//! processor decided: `202` queued (or handed over, for chat), `200` with `"duplicate": true`
//! for a repeated key, `422` refused (no route, a closed messaging window), naming why.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::error::ApiError;
use super::routes::AppState;
use crate::journal::Appended;
use crate::model::{
    AgentRef, Attachment, AutomaticKind, AutomaticRequest, OutboundRecord, Record, ReplyRequest,
};
use crate::outbound::{OutgoingItem, RequestOutcome};
use crate::store::keys;

/// How long a request waits for the processor to apply it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    agent: AgentRef,
    text: String,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    attachments: Vec<AttachmentRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentRef {
    /// A blob id in deskgate's blob store.
    blob_id: String,
    #[serde(default)]
    name: Option<String>,
    content_type: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomaticBody {
    kind: AutomaticKind,
    template: String,
    conversation_id: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(Uuid::new_v4().to_string()),
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Idempotency-Key: must be 1-255 visible ASCII characters".to_owned(),
                    )
                })?;
            Ok(key.to_owned())
        }
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        ApiError::BadRequest(format!("{path}: {}", error.into_inner()))
    })
}

/// `POST /v1/control/conversations/{id}/replies`
pub async fn reply(
    State(state): State<AppState>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: ReplyBody = json_body(&body)?;
    if body.text.trim().is_empty() {
        return Err(ApiError::Unprocessable(
            "text: must not be empty".to_owned(),
        ));
    }
    if body.agent.id.trim().is_empty() {
        return Err(ApiError::Unprocessable(
            "agent.id: must not be empty".to_owned(),
        ));
    }
    let mut attachments = Vec::new();
    for (i, a) in body.attachments.into_iter().enumerate() {
        let content = state
            .blobs
            .get(&a.blob_id)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "attachments[{i}].blob_id: no blob {:?}",
                    a.blob_id
                ))
            })?;
        attachments.push(Attachment {
            id: a.blob_id,
            name: a.name,
            content_type: a.content_type,
            size: content.len() as u64,
        });
    }
    let request = ReplyRequest {
        idempotency_key: idempotency_key(&headers)?,
        conversation_id,
        agent: body.agent,
        text: body.text,
        html: body.html,
        attachments,
        requested_at: Utc::now(),
    };
    submit(&state, OutboundRecord::Reply(request)).await
}

/// `POST /v1/control/outbound/automatic`
pub async fn automatic(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: AutomaticBody = json_body(&body)?;
    let request = AutomaticRequest {
        idempotency_key: idempotency_key(&headers)?,
        kind: body.kind,
        template: body.template,
        conversation_id: body.conversation_id,
        to: body.to,
        fields: body.fields,
        requested_at: Utc::now(),
    };
    submit(&state, OutboundRecord::Automatic(request)).await
}

/// Journals a request, waits for the processor to apply it, and answers with its outcome.
async fn submit(state: &AppState, record: OutboundRecord) -> Result<Response, ApiError> {
    let appended = state
        .journal
        .append(Record::Outbound(Box::new(record)))
        .await?;
    let (seq, duplicate) = match appended {
        Appended::New { seq } => (seq, false),
        Appended::Duplicate { seq } => (seq, true),
    };
    let mut position = state.position.clone();
    let applied = tokio::time::timeout(APPLY_TIMEOUT, position.wait_for(|p| p.cursor >= seq)).await;
    if !matches!(applied, Ok(Ok(_))) {
        return Err(ApiError::Unavailable {
            message: format!("request journaled at {seq} but not applied yet; retry with the same Idempotency-Key"),
            retry_after_secs: 1,
        });
    }
    let outcome: RequestOutcome = state
        .store
        .state_get(&keys::outbound_request(seq))?
        .ok_or_else(|| {
            ApiError::Internal(format!("journal seq {seq} is not an outbound request"))
        })?;
    let body = json!({
        "status": outcome.status, "item_id": outcome.item_id, "message_id": outcome.message_id,
        "reason": outcome.reason, "journal_seq": seq, "duplicate": duplicate,
    });
    if outcome.status == "refused" {
        let reason = outcome.reason.unwrap_or_default();
        return Err(ApiError::Unprocessable(reason));
    }
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(body)).into_response())
}

/// `GET /v1/control/outbound/{item_id}`: one outgoing message and its state.
pub async fn item(
    State(state): State<AppState>,
    Path(item_id): Path<String>,
) -> Result<Json<OutgoingItem>, ApiError> {
    state
        .store
        .state_get::<OutgoingItem>(&keys::outgoing(&item_id))?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no outgoing message {item_id:?}")))
}
