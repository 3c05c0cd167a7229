//! The control API (`/v1/control/...`): what the ticket store and admins ask of deskgate.
//!
//! Every route requires `Authorization: Bearer <token>` with one of the configured tokens,
//! compared in constant time. The inbound hooks do not use it: they carry their own signatures.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::routes::AppState;
use crate::events::sinks::{DeadLetter, EnableError, ReplayError};
use crate::model::Quarantined;
use crate::store::keys;

/// Bearer tokens the control API accepts.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Vec<String>>);

impl Tokens {
    pub fn new(tokens: Vec<String>) -> Self {
        Tokens(Arc::new(tokens))
    }

    /// Whether `presented` matches a configured token, without revealing which or how far.
    fn accepts(&self, presented: &str) -> bool {
        let mut matched = subtle::Choice::from(0);
        for token in self.0.iter() {
            matched |= token.as_bytes().ct_eq(presented.as_bytes());
        }
        matched.into()
    }
}

/// The control API's routes, without the token check [`super::routes`] puts them behind.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_quarantine))
        .routes(routes!(
            super::backup_control::start,
            super::backup_control::status
        ))
        .routes(routes!(list_sinks))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letter))
        .routes(routes!(enable_sink))
        .routes(routes!(super::mail_control::retry_quarantined))
        .routes(routes!(super::mail_control::attachment))
        .merge(super::tickets::routes())
        .routes(routes!(super::outbound::reply))
        .routes(routes!(super::outbound::automatic))
        .routes(routes!(super::outbound::item))
        .merge(super::contacts::routes())
}

/// Refuses a request without a valid bearer token (also guards the events API).
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(token) if state.tokens.accepts(token.trim()) => next.run(request).await,
        // The same answer for a missing and a wrong token: nothing to learn from the difference.
        _ => {
            let mut response = ErrorBody::response(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs a valid bearer token",
                "unauthorized",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Page {
    /// The last seq of the previous page (its `next`).
    after: Option<u64>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /v1/control/quarantine?after=SEQ&limit=N`: records set aside, with their reasons.
#[utoipa::path(
    get,
    path = "/v1/control/quarantine",
    tag = "control",
    params(Page),
    responses(
        (status = 200, description = "`{\"items\": [...], \"next\": SEQ|null}`: each entry's `journal_seq`, `channel`, `external_id`, `reason`, `at`, the raw input's blob id (`raw_blob`) and, once retried, `retried_as`.", body = Object),
        (status = 400, description = "A query parameter that is unknown or not a whole number.", body = ErrorBody),
    ),
)]
async fn list_quarantine(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let after = page.after.map(keys::quarantine);
    let items = state
        .store
        .state_scan::<Quarantined>(keys::QUARANTINE, after.as_deref(), limit)?;
    let next = items.last().map(|(_, q)| q.journal_seq);
    let items: Vec<_> = items.into_iter().map(|(_, q)| q).collect();
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `GET /v1/control/sinks`: every sink's cursor, lag, health and counters.
#[utoipa::path(
    get,
    path = "/v1/control/sinks",
    tag = "control",
    responses((status = 200, description = "`{\"sinks\": {name: status}}`: each sink's cursor, lag, health, last error and counters (docs/sinks.md).", body = Object)),
)]
async fn list_sinks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "sinks": state.sinks.statuses() }))
}

/// `GET /v1/control/sinks/{sink}/dead_letters?after=SEQ&limit=N`: events the sink gave up on,
/// by event seq.
#[utoipa::path(
    get,
    path = "/v1/control/sinks/{sink}/dead_letters",
    tag = "control",
    params(("sink" = String, Path, description = "A configured sink's name."), Page),
    responses(
        (status = 200, description = "`{\"items\": [...], \"next\": SEQ|null}`: the events the sink gave up on, by event seq, with the last error.", body = Object),
        (status = 400, description = "A query parameter that is unknown or not a whole number.", body = ErrorBody),
        (status = 404, description = "No sink with this name is configured.", body = ErrorBody),
    ),
)]
async fn list_dead_letters(
    State(state): State<AppState>,
    Path(sink): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.sinks.contains(&sink) {
        return Err(ApiError::NotFound(format!(
            "no sink {sink:?} is configured"
        )));
    }
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let items = state
        .store
        .sink_dead_list::<DeadLetter>(&sink, page.after.unwrap_or(0), limit)?;
    let next = items.last().map(|(seq, _)| *seq);
    let items: Vec<_> = items.into_iter().map(|(_, dead)| dead).collect();
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `POST /v1/control/sinks/{sink}/enable`: re-enables a sink its endpoint disabled with 410
/// Gone (202); it delivers again from the refused event. 409 when the sink is not disabled.
#[utoipa::path(
    post,
    path = "/v1/control/sinks/{sink}/enable",
    tag = "control",
    params(("sink" = String, Path, description = "A configured sink's name.")),
    responses(
        (status = 202, description = "`{\"status\": \"enabling\", \"sink\": name}`", body = Object),
        (status = 404, description = "No sink with this name is configured.", body = ErrorBody),
        (status = 409, description = "The sink is not disabled.", body = ErrorBody),
    ),
)]
async fn enable_sink(
    State(state): State<AppState>,
    Path(sink): Path<String>,
) -> Result<Response, ApiError> {
    state.sinks.enable(&sink).map_err(|error| match error {
        EnableError::NoSink(_) => ApiError::NotFound(error.to_string()),
        EnableError::NotDisabled(_) => ApiError::Conflict(error.to_string()),
    })?;
    let body = Json(json!({ "status": "enabling", "sink": sink }));
    Ok((StatusCode::ACCEPTED, body).into_response())
}

/// `POST /v1/control/sinks/{sink}/dead_letters/{seq}/replay`: queues the dead letter for
/// redelivery (202). It leaves the list once delivered; if it fails again it stays, with a new
/// `deskgate.sink.dead_lettered` event.
#[utoipa::path(
    post,
    path = "/v1/control/sinks/{sink}/dead_letters/{seq}/replay",
    tag = "control",
    params(
        ("sink" = String, Path, description = "A configured sink's name."),
        ("seq" = u64, Path, description = "The dead letter's event seq."),
    ),
    responses(
        (status = 202, description = "`{\"status\": \"queued\", \"sink\": name, \"event_seq\": seq}`", body = Object),
        (status = 400, description = "A seq that is not a whole number.", body = ErrorBody),
        (status = 404, description = "No such sink, or no dead letter for this event.", body = ErrorBody),
        (status = 503, description = "The sink's replay queue is full: retry.", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
async fn replay_dead_letter(
    State(state): State<AppState>,
    Path((sink, seq)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    if !state.sinks.contains(&sink) {
        return Err(ApiError::NotFound(format!(
            "no sink {sink:?} is configured"
        )));
    }
    if state
        .store
        .sink_dead_get::<DeadLetter>(&sink, seq)?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "sink {sink:?} has no dead letter for event {seq}"
        )));
    }
    state
        .sinks
        .replay(&sink, seq)
        .map_err(|error| match error {
            ReplayError::NoSink(_) | ReplayError::NoDeadLetters(_) => {
                ApiError::NotFound(error.to_string())
            }
            ReplayError::Busy(_) => ApiError::Unavailable {
                message: error.to_string(),
                retry_after_secs: 5,
            },
        })?;
    let body = Json(json!({ "status": "queued", "sink": sink, "event_seq": seq }));
    Ok((StatusCode::ACCEPTED, body).into_response())
}
