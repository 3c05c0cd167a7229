//! `POST /v1/control/backup` `{"dest": "/abs/path"}` starts a consistent copy of the state
//! into a new directory on the daemon's host (202); `GET /v1/control/backup` shows how the
//! current or last one stands. The copy itself is [`crate::backup`]'s.

use std::path::PathBuf;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::journaled;
use super::routes::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BackupStart)]
struct StartBody {
    /// An absolute path to a directory that does not exist yet, on the daemon's host.
    #[schema(value_type = String)]
    dest: PathBuf,
}

/// `POST /v1/control/backup`
#[utoipa::path(
    post,
    path = "/v1/control/backup",
    tag = "control",
    request_body = StartBody,
    responses(
        (status = 202, description = "The copy started: `status` (`running`, `done`, `failed`), `dest`, `keys_copied`/`keys_estimated`, `blobs_copied`, `bytes`, `journal_seq`, `processor_cursor`, `error`, `started_at`, `finished_at`.", body = Object),
        (status = 400, description = "A malformed JSON body, naming the field.", body = ErrorBody),
        (status = 409, description = "A backup is running.", body = ErrorBody),
        (status = 422, description = "`dest` is relative or exists.", body = ErrorBody),
    ),
)]
pub async fn start(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: StartBody = journaled::json_body(&body)?;
    let progress = state.backups.start(&body.dest)?;
    Ok((StatusCode::ACCEPTED, Json(progress)).into_response())
}

/// `GET /v1/control/backup`
#[utoipa::path(
    get,
    path = "/v1/control/backup",
    operation_id = "backup_status",
    tag = "control",
    responses(
        (status = 200, description = "The current or last backup: `status` (`running`, `done`, `failed`), `dest`, `keys_copied`/`keys_estimated`, `blobs_copied`, `bytes`, `journal_seq`, `processor_cursor`, `error`, `started_at`, `finished_at`.", body = Object),
        (status = 404, description = "No backup has run since start-up.", body = ErrorBody),
    ),
)]
pub async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let progress = state
        .backups
        .status()
        .ok_or_else(|| ApiError::NotFound("no backup has run since start-up".to_owned()))?;
    Ok(Json(progress).into_response())
}
