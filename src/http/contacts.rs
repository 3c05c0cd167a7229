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
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::journaled::{self, CommandAnswers, IdempotencyKey};
use super::routes::AppState;
use crate::contacts;
use crate::identity;
use crate::model::{Contact, ContactCommand, ContactControl, ControlOutcome, Identity, Record};
use crate::store::keys;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lookup))
        .routes(routes!(by_id, erase))
        .routes(routes!(set_owner))
        .routes(routes!(merge))
}

#[utoipa::path(
    get,
    path = "/v1/control/contacts/{id}",
    tag = "control",
    params(("id" = String, Path, description = "The contact's id.")),
    responses(
        (status = 200, description = "`{\"contact\": {...}}` (docs/contacts.md); an id absorbed by a merge answers with the contact it lives on.", body = Object),
        (status = 404, description = "No such contact, or it was erased.", body = ErrorBody),
    ),
)]
async fn by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let contact = contacts::follow_in_store(&state.store, &id)?
        .filter(Contact::is_live)
        .ok_or_else(|| ApiError::NotFound(format!("no contact {id}")))?;
    Ok(Json(json!({ "contact": contact })))
}

/// One identity to look a contact up by, normalised as the channels normalise it.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct IdentityQuery {
    /// An email address.
    email: Option<String>,
    /// A phone number (E.164, or national in `contacts.default_region`).
    phone: Option<String>,
    /// A WhatsApp id.
    whatsapp: Option<String>,
    /// A channel id, with `id`: the identity a channel knows the contact by.
    channel: Option<String>,
    /// The contact's id on `channel`.
    id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/control/contacts",
    tag = "control",
    params(IdentityQuery),
    responses(
        (status = 200, description = "`{\"contact\": {...}}`: the contact holding the identity.", body = Object),
        (status = 400, description = "None of the identities given, or an unknown parameter.", body = ErrorBody),
        (status = 404, description = "No contact holds the identity.", body = ErrorBody),
        (status = 422, description = "Not a valid email, phone or WhatsApp id, named.", body = ErrorBody),
    ),
)]
async fn lookup(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query: IdentityQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
    let identity = query_identity(query, state.phone_region)?;
    let contact = contacts::find(&state.store, &identity)?
        .ok_or_else(|| ApiError::NotFound(format!("no contact holds {}", identity.index_key())))?;
    Ok(Json(json!({ "contact": contact })))
}

fn query_identity(query: IdentityQuery, region: identity::Region) -> Result<Identity, ApiError> {
    let invalid = |field: &str, raw: &str| {
        ApiError::Unprocessable(format!("{field}: {raw:?} is not a valid {field}"))
    };
    match query {
        IdentityQuery {
            email: Some(raw), ..
        } => identity::email(&raw).ok_or_else(|| invalid("email", &raw)),
        IdentityQuery {
            phone: Some(raw), ..
        } => identity::phone(&raw, region).ok_or_else(|| invalid("phone", &raw)),
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ContactOwner)]
struct OwnerBody {
    /// The owning agent's id (at most 256 bytes), or `null` for none.
    owner: Option<String>,
}

#[utoipa::path(
    put,
    path = "/v1/control/contacts/{id}/owner",
    tag = "control",
    params(("id" = String, Path, description = "The contact's id."), IdempotencyKey),
    request_body = OwnerBody,
    responses(CommandAnswers),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ContactMerge)]
struct MergeBody {
    /// The contact merged into the one in the path (which survives).
    from: String,
}

#[utoipa::path(
    post,
    path = "/v1/control/contacts/{id}/merge",
    operation_id = "merge_contacts",
    tag = "control",
    params(("id" = String, Path, description = "The contact's id."), IdempotencyKey),
    request_body = MergeBody,
    responses(CommandAnswers),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/control/contacts/{id}",
    tag = "control",
    params(("id" = String, Path, description = "The contact's id."), IdempotencyKey),
    responses(CommandAnswers),
)]
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
    match journaled::outcome(state, seq, &keys::control_outcome(seq))? {
        ControlOutcome::Done(body) => Ok(Json(body)),
        ControlOutcome::Refused(refusal) => Err(refusal.into()),
    }
}
