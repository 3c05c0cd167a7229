//! The control API (`/v1/control/...`): what the ticket store and admins ask of deskgate.
//!
//! Every route requires `Authorization: Bearer <token>` with one of the configured tokens,
//! compared in constant time. The inbound hooks do not use it: they carry their own signatures.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::routes::AppState;
use crate::events::sinks::{DeadLetter, EnableError, ReplayError};
use crate::processor::Quarantined;
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

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/control/quarantine", get(list_quarantine))
        .route(
            "/v1/control/backup",
            post(super::backup_control::start).get(super::backup_control::status),
        )
        .route("/v1/control/sinks", get(list_sinks))
        .route(
            "/v1/control/sinks/{sink}/dead_letters",
            get(list_dead_letters),
        )
        .route(
            "/v1/control/sinks/{sink}/dead_letters/{seq}/replay",
            post(replay_dead_letter),
        )
        .route("/v1/control/sinks/{sink}/enable", post(enable_sink))
        .route(
            "/v1/control/quarantine/{seq}/retry",
            axum::routing::post(super::mail_control::retry_quarantined),
        )
        .route(
            "/v1/control/attachments/{id}",
            get(super::mail_control::attachment),
        )
        .merge(super::routing_control::router())
        .route(
            "/v1/control/conversations/{conversation_id}/replies",
            post(super::outbound::reply),
        )
        .route(
            "/v1/control/outbound/automatic",
            post(super::outbound::automatic),
        )
        .route("/v1/control/outbound/{item_id}", get(super::outbound::item))
        .merge(super::contacts::routes())
        .route_layer(middleware::from_fn_with_state(state, require_token))
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
            let body = Json(json!({
                "error": "this endpoint needs a valid bearer token",
                "code": "unauthorized",
            }));
            let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    /// The last journal seq of the previous page.
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/control/quarantine?after=SEQ&limit=N`: records set aside, with their reasons.
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
async fn list_sinks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "sinks": state.sinks.statuses() }))
}

/// `GET /v1/control/sinks/{sink}/dead_letters?after=SEQ&limit=N`: events the sink gave up on,
/// by event seq.
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
