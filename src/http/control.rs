//! The control API (`/v1/control/...`): what the ticket store and admins ask of deskgate.
//!
//! Every route requires `Authorization: Bearer <token>` with one of the configured tokens,
//! compared in constant time. The inbound hooks do not use it: they carry their own signatures.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
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
