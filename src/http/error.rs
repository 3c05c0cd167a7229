//! The one place where errors become HTTP responses: a status code and a JSON body
//! `{"error": "<what went wrong, naming the field or limit>", "code": "<machine-readable>"}`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::backup::BackupError;
use crate::channels::ChannelError;
use crate::journal::JournalError;
use crate::model::{ControlOutcome, Refusal};
use crate::ratelimit::RateLimited;
use crate::store::StoreError;

// Built by ApiError, the bearer token check, the fallbacks, and json_error_bodies (for axum's
// own rejections); its doc comments are its description in the OpenAPI document.
/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field or limit.
    #[schema(example = "from.email: invalid type: integer `7`, expected a string")]
    pub error: String,
    /// The kind of error, for programs: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `request_timeout`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `unprocessable`, `missing_fields`, `too_many_requests`,
    /// `unavailable`, `internal`; `refused` for a control command the processor refused (with
    /// 404, 409 or 422); `error` for another status.
    #[schema(value_type = String, example = "bad_request")]
    pub code: &'static str,
    /// With `missing_fields`: every required field the web form lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub missing: Option<Vec<String>>,
}

impl ErrorBody {
    /// An error answer with `status` and this body.
    pub fn response(status: StatusCode, error: impl Into<String>, code: &'static str) -> Response {
        let body = ErrorBody {
            error: error.into(),
            code,
            missing: None,
        };
        (status, Json(body)).into_response()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the request body did not arrive within {secs} seconds")]
    RequestTimeout { secs: u64 },
    /// The request contradicts the state (a merge of a contact with itself).
    #[error("{0}")]
    Conflict(String),
    /// `of` names whose limit: "this channel's", "the control API's".
    #[error("request body is larger than {of} limit of {limit} bytes")]
    PayloadTooLarge { limit: u64, of: &'static str },
    /// One request carried more items (webhook batch entries) than one journal commit takes
    /// (`journal.max_batch`, and never fewer than a Meta batch holds).
    #[error("the request carries {items} items; one request may carry at most {limit}")]
    TooManyItems { items: usize, limit: usize },
    #[error("content type must be {expected}")]
    UnsupportedMediaType { expected: String },
    #[error("{0}")]
    Unprocessable(String),
    /// A signature is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Required fields are missing; `fields` names every one.
    #[error("missing required fields: {}", .fields.join(", "))]
    MissingFields { fields: Vec<String> },
    /// The client sent too much too fast.
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// Try again later; the message says why.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// Something failed inside (the database, a bug). The detail goes to the log only, under
    /// an id the answer names: store errors name keys and files a client has no business with.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } | ApiError::TooManyItems { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MissingFields { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } | ApiError::TooManyItems { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::MissingFields { .. } => "missing_fields",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = match &self {
            ApiError::Internal(detail) => {
                let id = uuid::Uuid::new_v4();
                tracing::error!(%id, error = %detail, "request failed");
                format!("internal error (logged as {id})")
            }
            _ if status.is_server_error() => {
                tracing::warn!(error = %self, "request failed");
                self.to_string()
            }
            _ => self.to_string(),
        };
        let body = ErrorBody {
            error,
            code: self.code(),
            missing: match &self {
                ApiError::MissingFields { fields } => Some(fields.clone()),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Unavailable {
            retry_after_secs, ..
        }
        | ApiError::TooManyRequests { retry_after_secs } = self
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        response
    }
}

/// Keeps every error answer in the JSON shape: the few that do not come from an [`ApiError`]
/// (axum's own rejections of a path parameter or query string of the wrong type, answered as
/// plain text) are rewritten with their text as the message and a code from their status.
pub async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are short; anything unreadable is replaced by the status's reason.
    let text = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        _ if status.is_server_error() => "internal",
        _ => "error",
    };
    let mut rewritten = ErrorBody::response(status, message, code);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

impl From<ChannelError> for ApiError {
    fn from(error: ChannelError) -> Self {
        match error {
            ChannelError::Malformed(message) => ApiError::BadRequest(message),
            ChannelError::Invalid(message) => ApiError::Unprocessable(message),
            ChannelError::UnsupportedMediaType { expected } => {
                ApiError::UnsupportedMediaType { expected }
            }
            ChannelError::Storage(message) => ApiError::Unavailable {
                message: format!("{message}; retry later"),
                retry_after_secs: 5,
            },
            ChannelError::Unauthorized(message) => ApiError::Unauthorized(message),
            ChannelError::MissingFields(fields) => ApiError::MissingFields { fields },
            ChannelError::Unavailable(message) => ApiError::Unavailable {
                message,
                retry_after_secs: 30,
            },
        }
    }
}

impl From<BackupError> for ApiError {
    fn from(error: BackupError) -> Self {
        match error {
            BackupError::Busy(_) => ApiError::Conflict(error.to_string()),
            BackupError::Destination(_) => ApiError::Unprocessable(error.to_string()),
            BackupError::Store(_) | BackupError::Io(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<RateLimited> for ApiError {
    fn from(limited: RateLimited) -> Self {
        ApiError::TooManyRequests {
            retry_after_secs: limited.retry_after_secs,
        }
    }
}

impl From<JournalError> for ApiError {
    fn from(error: JournalError) -> Self {
        let retry_after_secs = match error {
            JournalError::Busy | JournalError::Timeout => 1,
            JournalError::Closed | JournalError::Write { .. } => 5,
        };
        ApiError::Unavailable {
            message: format!("{error}; retry later"),
            retry_after_secs,
        }
    }
}

/// A contact request's refusal: `not_found`, `conflict`, `unprocessable` as any request's.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound(message) => ApiError::NotFound(message),
            Refusal::Conflict(message) => ApiError::Conflict(message),
            Refusal::Invalid(message) => ApiError::Unprocessable(message),
            Refusal::Internal(message) => ApiError::Internal(message),
        }
    }
}

/// The answer to a ticket, directory or quarantine command: its body when done; a refusal is
/// answered with its status and the code `refused` (a bug's as any internal error).
pub fn answer_command(outcome: ControlOutcome) -> Result<Response, ApiError> {
    let refusal = match outcome {
        ControlOutcome::Done(body) => return Ok((StatusCode::OK, Json(body)).into_response()),
        ControlOutcome::Refused(refusal) => refusal,
    };
    let status = match &refusal {
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Conflict(_) => StatusCode::CONFLICT,
        Refusal::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::Internal(_) => return Err(refusal.into()),
    };
    Ok(ErrorBody::response(status, refusal.to_string(), "refused"))
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_answers_without_its_detail() {
        let error = ApiError::from(StoreError::Corrupt {
            key: "state/contact/42".into(),
            reason: "bad bytes".into(),
        });
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body =
            futures::executor::block_on(http_body_util::BodyExt::collect(response.into_body()))
                .unwrap()
                .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let text = body["error"].as_str().unwrap();
        assert!(text.starts_with("internal error (logged as "), "{text}");
        assert!(!text.contains("contact/42"), "{text}");
        assert_eq!(body["code"], "internal");
    }
}
