//! Contact routes of the control API (behind its bearer token, see [`super::control`]).
//!
//! - `GET /v1/control/contacts/{id}`: the contact; an id absorbed by a merge answers with the
//!   contact it lives on. 404 for an unknown or erased contact.
//! - `GET /v1/control/contacts?email=..` (or `phone=..`, `whatsapp=..`, or `channel=..&id=..`):
//!   the contact holding that identity, normalised as the channels normalise it.
//! - `PUT /v1/control/contacts/{id}/owner` `{"owner": "agent-7"}` (or `null`): sets the owner.
//! - `POST /v1/control/contacts/{id}/merge` `{"from": "<other id>"}`: merges by hand.
//! - `DELETE /v1/control/contacts/{id}`: erases the contact.
//!
//! Mutations are journaled (`Record::Contact`), so they are durable, ordered with messages and
//! applied once: the `Idempotency-Key` header (else a fresh UUID) is the record's dedupe key;
//! the handler waits for the processor to apply it and answers with the outcome it stored.

use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::journaled;
use super::routes::AppState;
use crate::channels::identity;
use crate::contacts::{self, control::Outcome, Contact};
use crate::model::{ContactCommand, ContactControl, Identity, Record};
use crate::store::keys;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/control/contacts", get(lookup))
        .route("/v1/control/contacts/{id}", get(by_id).delete(erase))
        .route("/v1/control/contacts/{id}/owner", put(set_owner))
        .route("/v1/control/contacts/{id}/merge", post(merge))
}

async fn by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let contact = contacts::follow_in_store(&state.store, &id)?
        .filter(Contact::is_live)
        .ok_or_else(|| ApiError::NotFound(format!("no contact {id}")))?;
    Ok(Json(json!({ "contact": contact })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityQuery {
    email: Option<String>,
    phone: Option<String>,
    whatsapp: Option<String>,
    channel: Option<String>,
    id: Option<String>,
}

async fn lookup(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query: IdentityQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
    let identity = query_identity(query)?;
    let contact = contacts::find(&state.store, &identity)?
        .ok_or_else(|| ApiError::NotFound(format!("no contact holds {}", identity.index_key())))?;
    Ok(Json(json!({ "contact": contact })))
}

fn query_identity(query: IdentityQuery) -> Result<Identity, ApiError> {
    let invalid = |field: &str, raw: &str| {
        ApiError::Unprocessable(format!("{field}: {raw:?} is not a valid {field}"))
    };
    match query {
        IdentityQuery {
            email: Some(raw), ..
        } => identity::email(&raw).ok_or_else(|| invalid("email", &raw)),
        IdentityQuery {
            phone: Some(raw), ..
        } => identity::phone(&raw).ok_or_else(|| invalid("phone", &raw)),
        IdentityQuery {
            whatsapp: Some(raw),
            ..
        } => identity::whatsapp_id(&raw).ok_or_else(|| invalid("whatsapp", &raw)),
        IdentityQuery {
            channel: Some(channel),
            id: Some(id),
            ..
        } => Ok(Identity::Channel { channel, id }),
        _ => Err(ApiError::BadRequest(
            "query: give one of email, phone, whatsapp, or channel and id".to_owned(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerBody {
    owner: Option<String>,
}

async fn set_owner(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: OwnerBody = journaled::json_body(&body)?;
    let owner = body.owner.filter(|o| !o.trim().is_empty());
    if owner.as_ref().is_some_and(|o| o.len() > 256) {
        return Err(ApiError::Unprocessable(
            "owner: must be at most 256 bytes".to_owned(),
        ));
    }
    let command = ContactCommand::SetOwner {
        contact_id: id,
        owner,
    };
    mutate(&state, &headers, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    from: String,
}

async fn merge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: MergeBody = journaled::json_body(&body)?;
    let command = ContactCommand::Merge {
        into: id,
        from: body.from,
    };
    mutate(&state, &headers, command).await
}

async fn erase(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    mutate(&state, &headers, ContactCommand::Erase { contact_id: id }).await
}

/// Journals a command, waits until the processor applied it, and answers with its outcome.
async fn mutate(
    state: &AppState,
    headers: &HeaderMap,
    command: ContactCommand,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = Record::Contact(ContactControl {
        key: journaled::idempotency_key(headers)?,
        command,
        received_at: Utc::now(),
    });
    let seq = journaled::journal_and_wait(state, record).await?.seq;
    let outcome: Outcome = journaled::outcome(state, seq, &keys::control_outcome(seq))?;
    let message = || outcome.body["error"].as_str().unwrap_or("").to_owned();
    match outcome.status {
        200 => Ok(Json(outcome.body)),
        404 => Err(ApiError::NotFound(message())),
        409 => Err(ApiError::Conflict(message())),
        422 => Err(ApiError::Unprocessable(message())),
        _ => Err(ApiError::Internal(message())),
    }
}
