//! Control routes for tickets and conversations, and the directory of users and teams they are
//! routed to (`/v1/control/tickets`, `conversations`, `users`, `teams`). Reads answer from state; mutations are journaled as
//! [`Record::Control`], and the handler answers once the processor has applied them, with the
//! outcome the processor stored.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use http::HeaderMap;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::journaled::{self, CommandAnswers, IdempotencyKey};
use super::routes::AppState;
use crate::model::ControlOutcome;
use crate::model::{Availability, ControlCommand, ControlRecord, Record};
use crate::store::keys;
use crate::tickets;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(put_user))
        .routes(routes!(put_availability))
        .routes(routes!(put_team))
        .routes(routes!(get_ticket, delete_ticket))
        .routes(routes!(put_status))
        .routes(routes!(put_owner))
        .routes(routes!(put_pipeline))
        .routes(routes!(merge))
        .routes(routes!(agent_emailed))
        .routes(routes!(delete_conversation))
        .routes(routes!(close_conversation))
        .routes(routes!(split))
        .routes(routes!(spam, unmark_spam))
        .routes(routes!(unmark_contact_spam))
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
    let outcome: ControlOutcome = journaled::outcome(state, seq, &keys::control_outcome(seq))?;
    super::error::answer_command(outcome)
}

#[utoipa::path(
    get,
    path = "/v1/control/users",
    tag = "control",
    responses((status = 200, description = "The directory: users (with seats, teams and availability) and teams, from the config and the control API (docs/routing.md).", body = Object)),
)]
async fn list_users(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(tickets::directory_view(
        &state.store,
        &state.live.current().rules,
    )?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = User)]
struct UserBody {
    /// The name people see.
    name: String,
    /// Where the user's notifications go.
    #[serde(default)]
    email: Option<String>,
    /// Whether the user holds a seat (takes work); default true.
    #[serde(default = "yes")]
    seat: bool,
    /// The teams the user is in, by id.
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

#[utoipa::path(
    put,
    path = "/v1/control/users/{id}",
    tag = "control",
    params(("id" = String, Path, description = "The user's id: 1-64 characters of a-z, 0-9, `-` and `_`."), IdempotencyKey),
    request_body = UserBody,
    responses(CommandAnswers),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserAvailability)]
struct AvailabilityBody {
    availability: Availability,
}

#[utoipa::path(
    put,
    path = "/v1/control/users/{id}/availability",
    tag = "control",
    params(("id" = String, Path, description = "The user's id."), IdempotencyKey),
    request_body = AvailabilityBody,
    responses(CommandAnswers),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Team)]
struct TeamBody {
    /// The name people see.
    label: String,
}

#[utoipa::path(
    put,
    path = "/v1/control/teams/{id}",
    tag = "control",
    params(("id" = String, Path, description = "The team's id: 1-64 characters of a-z, 0-9, `-` and `_`."), IdempotencyKey),
    request_body = TeamBody,
    responses(CommandAnswers),
)]
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

#[utoipa::path(
    get,
    path = "/v1/control/tickets/{id}",
    tag = "control",
    params(("id" = String, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket: its number, status, pipeline, owner, contact and conversations (docs/routing.md).", body = Object),
        (status = 404, description = "No such ticket.", body = ErrorBody),
    ),
)]
async fn get_ticket(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    tickets::ticket_view(&state.store, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no ticket {id:?}")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TicketStatus)]
struct StatusBody {
    /// A status of the ticket's pipeline.
    status: String,
}

#[utoipa::path(
    put,
    path = "/v1/control/tickets/{id}/status",
    tag = "control",
    params(("id" = String, Path, description = "The ticket's id."), IdempotencyKey),
    request_body = StatusBody,
    responses(CommandAnswers),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TicketOwner)]
struct OwnerBody {
    /// A user's id, or `null` for none.
    owner: Option<String>,
}

#[utoipa::path(
    put,
    path = "/v1/control/tickets/{id}/owner",
    tag = "control",
    params(("id" = String, Path, description = "The ticket's id."), IdempotencyKey),
    request_body = OwnerBody,
    responses(CommandAnswers),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TicketMerge)]
struct MergeBody {
    /// The ticket merged into the one in the path (which survives).
    merged: String,
}

#[utoipa::path(
    post,
    path = "/v1/control/tickets/{id}/merge",
    operation_id = "merge_tickets",
    tag = "control",
    params(("id" = String, Path, description = "The ticket that survives."), IdempotencyKey),
    request_body = MergeBody,
    responses(CommandAnswers),
)]
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AgentEmailed)]
struct AgentEmailedBody {
    /// The conversation the agent answered by mail, when not the ticket's latest.
    #[serde(default)]
    conversation: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/control/tickets/{id}/agent_emailed",
    tag = "control",
    params(("id" = String, Path, description = "The ticket's id."), IdempotencyKey),
    request_body = Option<AgentEmailedBody>,
    responses(CommandAnswers),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/control/tickets/{id}",
    tag = "control",
    params(("id" = String, Path, description = "The ticket's id."), IdempotencyKey),
    responses(CommandAnswers),
)]
async fn delete_ticket(
    State(state): State<AppState>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    submit(&state, &headers, ControlCommand::DeleteTicket { ticket }).await
}

#[utoipa::path(
    delete,
    path = "/v1/control/conversations/{id}",
    tag = "control",
    params(("id" = String, Path, description = "The conversation's id."), IdempotencyKey),
    responses(CommandAnswers),
)]
async fn delete_conversation(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = ControlCommand::DeleteConversation { conversation };
    submit(&state, &headers, command).await
}

#[utoipa::path(
    post,
    path = "/v1/control/conversations/{id}/close",
    tag = "control",
    params(("id" = String, Path, description = "The conversation's id."), IdempotencyKey),
    responses(CommandAnswers),
)]
async fn close_conversation(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = ControlCommand::CloseConversation { conversation };
    submit(&state, &headers, command).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConversationSplit)]
struct SplitBody {
    /// Message ids (`data.message.id` of the message events) to split off with their replies.
    messages: Vec<String>,
}

/// Without a body, the whole conversation moves to a new ticket; with `{"messages": [...]}`,
/// those messages and the mails replying to them move into a new conversation on a new ticket.
#[utoipa::path(
    post,
    path = "/v1/control/conversations/{id}/split",
    tag = "control",
    params(("id" = String, Path, description = "The conversation's id."), IdempotencyKey),
    request_body = Option<SplitBody>,
    responses(CommandAnswers),
)]
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

#[utoipa::path(
    post,
    path = "/v1/control/conversations/{id}/spam",
    tag = "control",
    params(("id" = String, Path, description = "The conversation's id."), IdempotencyKey),
    responses(CommandAnswers),
)]
async fn spam(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    submit(&state, &headers, ControlCommand::MarkSpam { conversation }).await
}

#[utoipa::path(
    delete,
    path = "/v1/control/conversations/{id}/spam",
    tag = "control",
    params(("id" = String, Path, description = "The conversation's id."), IdempotencyKey),
    responses(CommandAnswers),
)]
async fn unmark_spam(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = ControlCommand::UnmarkSpamConversation { conversation };
    submit(&state, &headers, command).await
}

#[utoipa::path(
    delete,
    path = "/v1/control/contacts/{id}/spam",
    tag = "control",
    params(("id" = String, Path, description = "The contact's id."), IdempotencyKey),
    responses(CommandAnswers),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TicketPipeline)]
struct PipelineBody {
    /// The pipeline the ticket moves to.
    pipeline: String,
    /// A status of that pipeline.
    status: String,
}

#[utoipa::path(
    put,
    path = "/v1/control/tickets/{id}/pipeline",
    tag = "control",
    params(("id" = String, Path, description = "The ticket's id."), IdempotencyKey),
    request_body = PipelineBody,
    responses(CommandAnswers),
)]
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
