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

use super::error::{ApiError, ErrorBody};
use super::journaled::{self, IdempotencyKey, JournaledErrors};
use super::routes::AppState;
use crate::model::{
    AgentRef, Attachment, AutomaticKind, AutomaticRequest, OutboundRecord, Record, ReplyRequest,
};
use crate::outbound::{OutgoingItem, RequestOutcome};
use crate::store::keys;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reply)]
pub struct ReplyBody {
    agent: AgentRef,
    /// The reply's plain text; must not be empty.
    text: String,
    /// An HTML version, for mail.
    #[serde(default)]
    html: Option<String>,
    /// Blobs uploaded before, attached to the reply.
    #[serde(default)]
    attachments: Vec<AttachmentRef>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AttachmentRef {
    /// A blob id in deskgate's blob store.
    blob_id: String,
    /// The file name the recipient sees.
    #[serde(default)]
    name: Option<String>,
    /// Its media type, as sent.
    content_type: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AutomaticMail)]
pub struct AutomaticBody {
    kind: AutomaticKind,
    /// The template's name (`ticket_received`, `ticket_closed`, `internal_notification`, …).
    template: String,
    /// The conversation the mail belongs to.
    conversation_id: String,
    /// The recipient, when not the conversation's customer.
    #[serde(default)]
    to: Option<String>,
    /// Values the template reads besides the conversation's own.
    #[serde(default)]
    #[schema(value_type = Object)]
    fields: serde_json::Map<String, serde_json::Value>,
}

/// `POST /v1/control/conversations/{id}/replies`
#[utoipa::path(
    post,
    path = "/v1/control/conversations/{conversation_id}/replies",
    tag = "control",
    params(("conversation_id" = String, Path, description = "The conversation replied on."), IdempotencyKey),
    request_body = ReplyBody,
    responses(
        (status = 202, description = "Queued or handed over: `status` (`queued`, `handed_over` for chat, `suppressed` for an automatic mail not sent), `item_id`, `message_id`, `reason`, `journal_seq`, `duplicate`.", body = Object),
        (status = 200, description = "A repeated `Idempotency-Key`: the first request's outcome, `\"duplicate\": true`.", body = Object),
        (status = 422, description = "Refused, naming why: an empty `text` or `agent.id`, an unknown blob, no route, a closed messaging window.", body = ErrorBody),
        JournaledErrors,
    ),
)]
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
#[utoipa::path(
    post,
    path = "/v1/control/outbound/automatic",
    tag = "control",
    params(IdempotencyKey),
    request_body = AutomaticBody,
    responses(
        (status = 202, description = "Queued or suppressed: `status` (`queued`, `handed_over` for chat, `suppressed` for an automatic mail not sent), `item_id`, `message_id`, `reason`, `journal_seq`, `duplicate`.", body = Object),
        (status = 200, description = "A repeated `Idempotency-Key`: the first request's outcome, `\"duplicate\": true`.", body = Object),
        (status = 422, description = "Refused, naming why (an unknown template or conversation, no address).", body = ErrorBody),
        JournaledErrors,
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/control/outbound/{item_id}",
    tag = "control",
    params(("item_id" = String, Path, description = "An outgoing message's `item_id`.")),
    responses(
        (status = 200, description = "The outgoing message and its delivery state (docs/outbound.md).", body = Object),
        (status = 404, description = "No outgoing message with this id.", body = ErrorBody),
    ),
)]
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
