//! Reading request bodies within a size limit and the body read timeout: the hooks' bodies
//! (each channel's `max_body_bytes`) and the control and events API's ([`CONTROL_MAX_BODY_BYTES`]).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;
use super::routes::AppState;

/// The largest body the control API reads (its requests are small JSON documents; the limit
/// is the one axum applied by default before the bodies were read here).
pub(super) const CONTROL_MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

/// Reads a control or events request's whole body before its handler runs, within the body
/// read timeout and [`CONTROL_MAX_BODY_BYTES`]: a slow or oversized body is answered 408 or 413
/// as on the hooks, instead of holding the connection for as long as the client likes.
pub(super) async fn buffered_body(
    State(state): State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = Limit {
        bytes: CONTROL_MAX_BODY_BYTES,
        of: "the control API's",
    };
    let body = read_body_within(&state, &parts.headers, body, limit).await?;
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}

/// A body size limit, and whose it is (for the error message).
pub(super) struct Limit {
    pub(super) bytes: u64,
    pub(super) of: &'static str,
}

/// [`read_body`] under the body read timeout.
pub(super) async fn read_body_within(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: Limit,
) -> Result<Bytes, ApiError> {
    let timeout = Duration::from_secs(state.body_read_timeout_secs);
    tokio::time::timeout(timeout, read_body(headers, body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            secs: state.body_read_timeout_secs,
        })?
}

/// Reads a body within `limit` bytes. A declared length over the limit is refused before any
/// of the body is read.
async fn read_body(headers: &HeaderMap, body: Body, limit: Limit) -> Result<Bytes, ApiError> {
    let Limit { bytes: limit, of } = limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit, of });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit, of })
        }
        Err(error) => Err(ApiError::BadRequest(format!(
            "could not read the request body: {error}"
        ))),
    }
}
