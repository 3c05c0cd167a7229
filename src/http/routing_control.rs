//! Control routes for the directory, tickets and conversations (`/v1/control/users`, `teams`,
//! `tickets`, `conversations`). Reads answer from state; mutations are journaled as
//! [`Record::Control`], and the handler answers once the processor has applied them, with the
//! outcome the processor stored.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::error::ApiError;
use super::journaled;
use super::routes::AppState;
use crate::model::{Availability, ControlCommand, ControlRecord, Record};
use crate::store::keys;
use crate::tickets::{self, Outcome};

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
        .route("/v1/control/tickets/{id}/pipeline", put(put_pipeline))
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
        .route(
            "/v1/control/conversations/{id}/spam",
            post(spam).delete(unmark_spam),
        )
        .route(
            "/v1/control/contacts/{id}/spam",
            axum::routing::delete(unmark_contact_spam),
        )
}

/// Journals a command, waits until the processor has applied it, and answers its outcome.
async fn submit(
    state: &AppState,
    headers: &HeaderMap,
    command: ControlCommand,
) -> Result<Response, ApiError> {
    let record = Record::Control(Box::new(ControlRecord {
        key: journaled::idempotency_key(headers)?,
        at: Utc::now(),
        command,
    }));
    let seq = journaled::journal_and_wait(state, record).await?.seq;
    let outcome: Outcome = journaled::outcome(state, seq, &keys::control_outcome(seq))?;
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    Ok((status, Json(outcome.body)).into_response())
}

async fn list_users(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(tickets::directory_view(
        &state.store,
        &state.live.current().rules,
    )?))
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
    let user: UserBody = journaled::json_body(&body)?;
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
    let AvailabilityBody { availability } = journaled::json_body(&body)?;
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
    let TeamBody { label } = journaled::json_body(&body)?;
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
    let StatusBody { status } = journaled::json_body(&body)?;
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
    let OwnerBody { owner } = journaled::json_body(&body)?;
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
    let MergeBody { merged } = journaled::json_body(&body)?;
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
        journaled::json_body(&body)?
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    /// Message ids (`data.message.id` of the message events) to split off with their replies.
    messages: Vec<String>,
}

/// Without a body, the whole conversation moves to a new ticket; with `{"messages": [...]}`,
/// those messages and the mails replying to them move into a new conversation on a new ticket.
async fn split(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let messages = if body.is_empty() {
        None
    } else {
        let SplitBody { messages } = journaled::json_body(&body)?;
        Some(messages)
    };
    let command = ControlCommand::SplitConversation {
        conversation,
        messages,
    };
    submit(&state, &headers, command).await
}

async fn spam(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    submit(&state, &headers, ControlCommand::MarkSpam { conversation }).await
}

async fn unmark_spam(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = ControlCommand::UnmarkSpamConversation { conversation };
    submit(&state, &headers, command).await
}

async fn unmark_contact_spam(
    State(state): State<AppState>,
    Path(contact): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    submit(
        &state,
        &headers,
        ControlCommand::UnmarkSpamContact { contact },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineBody {
    pipeline: String,
    status: String,
}

async fn put_pipeline(
    State(state): State<AppState>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let PipelineBody { pipeline, status } = journaled::json_body(&body)?;
    let command = ControlCommand::MoveTicket {
        ticket,
        pipeline,
        status,
    };
    submit(&state, &headers, command).await
}
