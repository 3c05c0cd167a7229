//! Control API routes for sending: an agent's reply on a conversation, an automatic mail, and
//! the state of one outgoing message.
//!
//! A send request is journaled (deduplicated on the `Idempotency-Key` header, else a fresh
//! UUID), then the handler waits until the processor has applied it and answers with what the
//! processor decided: `202` queued (or handed over, for chat), `200` with `"duplicate": true`
//! for a repeated key, `422` refused (no route, a closed messaging window), naming why.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::journaled;
use super::routes::AppState;
use crate::model::{
    AgentRef, Attachment, AutomaticKind, AutomaticRequest, OutboundRecord, Record, ReplyRequest,
};
use crate::outbound::{OutgoingItem, RequestOutcome};
use crate::store::keys;

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

/// `POST /v1/control/conversations/{id}/replies`
pub async fn reply(
    State(state): State<AppState>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: ReplyBody = journaled::json_body(&body)?;
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
        let size = state
            .blobs
            .claim(&a.blob_id)
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
            size,
        });
    }
    let request = ReplyRequest {
        idempotency_key: journaled::idempotency_key(&headers)?,
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
    let body: AutomaticBody = journaled::json_body(&body)?;
    let request = AutomaticRequest {
        idempotency_key: journaled::idempotency_key(&headers)?,
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
    let journaled::Applied { seq, duplicate } =
        journaled::journal_and_wait(state, Record::Outbound(Box::new(record))).await?;
    let outcome: RequestOutcome = journaled::outcome(state, seq, &keys::outbound_request(seq))?;
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
