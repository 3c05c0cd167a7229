//! `POST /v1/control/backup` `{"dest": "/abs/path"}` starts a consistent copy of the state
//! into a new directory on the daemon's host (202); `GET /v1/control/backup` shows how the
//! current or last one stands. The copy itself is [`crate::backup`]'s.

use std::path::PathBuf;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use super::journaled;
use super::routes::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// A directory that does not exist yet, on the daemon's host.
    dest: PathBuf,
}

/// `POST /v1/control/backup`
pub async fn start(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: StartBody = journaled::json_body(&body)?;
    let progress = state.backups.start(&body.dest)?;
    Ok((StatusCode::ACCEPTED, Json(progress)).into_response())
}

/// `GET /v1/control/backup`
pub async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let progress = state
        .backups
        .status()
        .ok_or_else(|| ApiError::NotFound("no backup has run since start-up".to_owned()))?;
    Ok(Json(progress).into_response())
}
