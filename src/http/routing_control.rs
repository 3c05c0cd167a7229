//! Control routes for the directory, tickets and conversations (`/v1/control/users`, `teams`,
//! `tickets`, `conversations`). Reads answer from state; mutations are journaled as
//! [`Record::Control`], and the handler answers once the processor has applied them, with the
//! outcome the processor stored.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::routes::AppState;
use crate::journal::Appended;
use crate::model::{Availability, ControlCommand, ControlRecord, Record};
use crate::store::keys;
use crate::tickets::{self, Outcome};

/// How long a mutation waits for the processor before answering 503 (the command stays
/// journaled and is applied; a retry with the same Idempotency-Key gets its outcome).
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/control/users", get(list_users))
        .route("/v1/control/users/{id}", put(put_user))
        .route("/v1/control/users/{id}/availability", put(put_availability))
        .route("/v1/control/teams/{id}", put(put_team))
        .route(
            "/v1/control/tickets/{id}",
            get(get_ticket).delete(delete_ticket),
        )
        .route("/v1/control/tickets/{id}/status", put(put_status))
        .route("/v1/control/tickets/{id}/owner", put(put_owner))
        .route("/v1/control/tickets/{id}/merge", post(merge))
        .route(
            "/v1/control/tickets/{id}/agent_emailed",
            post(agent_emailed),
        )
        .route(
            "/v1/control/conversations/{id}",
            axum::routing::delete(delete_conversation),
        )
        .route(
            "/v1/control/conversations/{id}/close",
            post(close_conversation),
        )
        .route("/v1/control/conversations/{id}/split", post(split))
        .route("/v1/control/conversations/{id}/spam", post(spam))
}

/// Parses a JSON body; the error names the field that failed.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "this endpoint needs a JSON object body".into(),
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

/// Journals a command, waits until the processor has applied it, and answers its outcome.
async fn submit(
    state: &AppState,
    headers: &HeaderMap,
    command: ControlCommand,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(value) => value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .ok_or_else(|| {
                ApiError::BadRequest("Idempotency-Key: must be 1-200 visible characters".into())
            })?
            .to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let record = Record::Control(Box::new(ControlRecord {
        key,
        at: Utc::now(),
        command,
    }));
    let seq = match state.journal.append(record).await? {
        Appended::New { seq } | Appended::Duplicate { seq } => seq,
    };
    let mut position = state.position.clone();
    let applied = tokio::time::timeout(APPLY_TIMEOUT, position.wait_for(|p| p.cursor >= seq));
    match applied.await {
        Ok(Ok(_)) => {}
        _ => return Err(ApiError::Unavailable {
            message:
                "the command is journaled but not applied yet; retry with the same Idempotency-Key"
                    .into(),
            retry_after_secs: 1,
        }),
    }
    let outcome: Outcome = state
        .store
        .state_get(&keys::control_outcome(seq))?
        .ok_or_else(|| ApiError::Internal(format!("journal record {seq} was quarantined")))?;
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    Ok((status, Json(outcome.body)).into_response())
}

async fn list_users(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(tickets::directory_view(&state.store, &state.routing)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default = "yes")]
    seat: bool,
    #[serde(default)]
    teams: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A directory id: the same rule as channel ids, so it is safe in keys and URLs.
fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{what} ids must be 1-64 characters of a-z, 0-9, '-' and '_'"
        )))
    }
}

async fn put_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_id("user", &id)?;
    let user: UserBody = parse(&body)?;
    let command = ControlCommand::PutUser {
        id,
        name: user.name,
        email: user.email,
        seat: user.seat,
        teams: user.teams,
    };
    submit(&state, &headers, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AvailabilityBody {
    availability: Availability,
}

async fn put_availability(
    State(state): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let AvailabilityBody { availability } = parse(&body)?;
    let command = ControlCommand::SetAvailability { user, availability };
    submit(&state, &headers, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamBody {
    label: String,
}

async fn put_team(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_id("team", &id)?;
    let TeamBody { label } = parse(&body)?;
    submit(&state, &headers, ControlCommand::PutTeam { id, label }).await
}

async fn get_ticket(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    tickets::ticket_view(&state.store, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no ticket {id:?}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
}

async fn put_status(
    State(state): State<AppState>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let StatusBody { status } = parse(&body)?;
    submit(
        &state,
        &headers,
        ControlCommand::SetTicketStatus { ticket, status },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerBody {
    owner: Option<String>,
}

async fn put_owner(
    State(state): State<AppState>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let OwnerBody { owner } = parse(&body)?;
    submit(
        &state,
        &headers,
        ControlCommand::SetTicketOwner { ticket, owner },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    /// The ticket merged into the one in the path (which survives).
    merged: String,
}

async fn merge(
    State(state): State<AppState>,
    Path(survivor): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let MergeBody { merged } = parse(&body)?;
    submit(
        &state,
        &headers,
        ControlCommand::MergeTickets { survivor, merged },
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AgentEmailedBody {
    #[serde(default)]
    conversation: Option<String>,
}

async fn agent_emailed(
    State(state): State<AppState>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let AgentEmailedBody { conversation } = if body.is_empty() {
        AgentEmailedBody::default()
    } else {
        parse(&body)?
    };
    let command = ControlCommand::AgentEmailed {
        ticket,
        conversation,
    };
    submit(&state, &headers, command).await
}

async fn delete_ticket(
    State(state): State<AppState>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    submit(&state, &headers, ControlCommand::DeleteTicket { ticket }).await
}

async fn delete_conversation(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = ControlCommand::DeleteConversation { conversation };
    submit(&state, &headers, command).await
}

async fn close_conversation(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = ControlCommand::CloseConversation { conversation };
    submit(&state, &headers, command).await
}

async fn split(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = ControlCommand::SplitConversation { conversation };
    submit(&state, &headers, command).await
}

async fn spam(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    submit(&state, &headers, ControlCommand::MarkSpam { conversation }).await
}
