//! Every HTTP route: inbound hooks, the events pull API, status and health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::{BufMut, Bytes, BytesMut};
use chrono::Utc;
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

use super::control::{self, Tokens};
use super::error::ApiError;
use crate::channels::{self, HookRequest};
use crate::config::{ChannelConfig, EventsConfig};
use crate::events::sinks::Sinks;
use crate::events::OutboxReader;
use crate::journal::{Appended, JournalHandle};
use crate::model::Record;
use crate::processor::Position;
use crate::store::{Blobs, Store};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub channels: Arc<BTreeMap<String, ChannelConfig>>,
    pub journal: JournalHandle,
    pub outbox: OutboxReader,
    pub position: watch::Receiver<Position>,
    pub events: Arc<EventsConfig>,
    /// Cancelled when shutdown begins: long polls return, readiness turns false.
    pub shutdown: CancellationToken,
    /// Bearer tokens for the control API.
    pub tokens: Tokens,
    /// Read access to state for the control API.
    pub store: Store,
    pub blobs: Blobs,
    /// The event sinks' statuses and replay queues.
    pub sinks: Sinks,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(control::router(state.clone()))
        .route("/hooks/{channel_id}", post(hook))
        .route("/v1/events", get(events))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

async fn hook(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let config = state
        .channels
        .get(&channel_id)
        .ok_or_else(|| ApiError::NotFound(format!("no channel {channel_id:?} is configured")))?;
    let (parts, body) = request.into_parts();
    channels::check_content_type(config, &parts.headers)?;
    let body = read_body(&parts.headers, body, config.max_body_bytes).await?;
    let hook = HookRequest {
        channel_id: &channel_id,
        headers: &parts.headers,
        body,
        received_at: Utc::now(),
        blobs: &state.blobs,
    };
    let messages = channels::parse(config, &hook)?;
    let appends = messages.into_iter().map(|inbound| {
        let external_id = inbound.external_id.clone();
        let journal = state.journal.clone();
        async move {
            (
                external_id,
                journal.append(Record::Inbound(Box::new(inbound))).await,
            )
        }
    });
    let mut items = Vec::new();
    let mut any_new = false;
    for (external_id, appended) in futures::future::join_all(appends).await {
        let (seq, duplicate) = match appended? {
            Appended::New { seq } => (seq, false),
            Appended::Duplicate { seq } => (seq, true),
        };
        any_new |= !duplicate;
        items.push(
            json!({ "external_id": external_id, "journal_seq": seq, "duplicate": duplicate }),
        );
    }
    let status = if any_new {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "status": "accepted", "duplicate": !any_new && !items.is_empty(), "items": items })),
    )
        .into_response())
}

/// Reads a body within `limit` bytes. A declared length over the limit is refused before any
/// of the body is read.
async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge { limit }),
        Err(error) => Err(ApiError::BadRequest(format!(
            "could not read the request body: {error}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    #[serde(default)]
    wait: u64,
}

/// `GET /v1/events?after=SEQ&limit=N&wait=SECS`: events after `after`, long-polling up to `wait`
/// seconds when there are none yet.
async fn events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query: EventsQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
    let limit = query.limit.unwrap_or(100).clamp(1, state.events.max_limit);
    let wait = Duration::from_secs(query.wait.min(state.events.max_wait_secs));
    let page = tokio::select! {
        page = state.outbox.read(query.after, limit, wait) => page?,
        // On shutdown, answer at once with whatever is there.
        () = state.shutdown.cancelled() => state.outbox.read(query.after, limit, Duration::ZERO).await?,
    };
    // The outbox holds each event's JSON ready to send: splice, don't re-serialise.
    let size = page.events.iter().map(|e| e.len() + 1).sum::<usize>() + 48;
    let mut body = BytesMut::with_capacity(size);
    body.put_slice(b"{\"events\":[");
    for (i, event) in page.events.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(event);
    }
    body.put_slice(format!("],\"next\":{}}}", page.next).as_bytes());
    Ok(([(header::CONTENT_TYPE, "application/json")], body.freeze()).into_response())
}

/// Where the pipeline stands: what is journaled, applied, and sequenced.
async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let position = *state.position.borrow();
    Json(json!({
        "journal": {
            "durable_seq": *state.journal.durable().borrow(),
            "queued": state.journal.backlog(),
        },
        "processor": { "cursor": position.cursor },
        "outbox": { "last_seq": position.outbox },
        "sinks": state.sinks.statuses(),
    }))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        )
            .into_response();
    }
    // A failing sink does not stop ingestion (events wait in the outbox), so readiness stays
    // 200; the body says which sink is failing and how far behind it is.
    let sinks = state.sinks.statuses();
    let degraded = sinks.values().any(|sink| !sink.healthy);
    let status = if degraded { "degraded" } else { "ready" };
    Json(json!({ "status": status, "sinks": sinks })).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

async fn method_not_allowed() -> Response {
    let body = Json(
        json!({ "error": "method not allowed on this endpoint", "code": "method_not_allowed" }),
    );
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal("the request could not be handled".to_owned()).into_response()
}
