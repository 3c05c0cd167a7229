//! The one place where errors become HTTP responses: a status code and a JSON body
//! `{"error": "<what went wrong, naming the field or limit>", "code": "<machine-readable>"}`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::backup::BackupError;
use crate::channels::ratelimit::RateLimited;
use crate::channels::ChannelError;
use crate::journal::JournalError;
use crate::store::StoreError;

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
    #[error("request body is larger than this channel's limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
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
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
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
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
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
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let mut body = json!({ "error": self.to_string(), "code": self.code() });
        if let ApiError::MissingFields { fields } = &self {
            body["missing"] = json!(fields);
        }
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
            JournalError::Closed | JournalError::Write(_) => 5,
        };
        ApiError::Unavailable {
            message: format!("{error}; retry later"),
            retry_after_secs,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Internal(error.to_string())
    }
}
