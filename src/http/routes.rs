//! Every HTTP route: inbound hooks, the events pull API, status and health.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::{BufMut, Bytes, BytesMut};
use chrono::Utc;
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

use super::control::{self, Tokens};
use super::error::ApiError;
use crate::channels::email::imap::MailboxRegistry;
use crate::channels::{self, HookRequest};
use crate::config::{ChannelConfig, ChannelKind, EventsConfig};
use crate::events::sinks::Sinks;
use crate::events::OutboxReader;
use crate::journal::{Appended, JournalHandle};
use crate::live::LiveHandle;
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
    /// How long a hook may take to receive its body.
    pub body_read_timeout_secs: u64,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// What a reload replaces: routing rules and the directory's base (for the control API's
    /// reads) and the public channels' rate limits. Read once per request.
    pub live: LiveHandle,
    /// Proxies whose `X-Forwarded-For` names the client (`server.trusted_proxies`).
    pub trusted_proxies: Arc<Vec<std::net::IpAddr>>,
    /// Each IMAP mailbox task's connection state, reported by `/readyz`.
    pub mailboxes: MailboxRegistry,
    /// Consistent copies of the state, taken while running (`deskgate backup`).
    pub backups: crate::backup::Backups,
}

/// Every route on one listener.
pub fn router(state: AppState) -> Router {
    finish(public_routes().merge(private_routes(&state)), state)
}

/// What the internet reaches: the inbound hooks (each channel checks its own signatures) and
/// health checks.
pub fn public_router(state: AppState) -> Router {
    finish(public_routes(), state)
}

/// What only the ticket store, admins and monitoring reach: events, status, metrics and the
/// control API. Served on `server.control_listen` when that is set.
pub fn private_router(state: AppState) -> Router {
    finish(private_routes(&state), state)
}

fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/hooks/{channel_id}", post(hook).get(verify_subscription))
        .route(
            "/v1/channels/{channel_id}/availability",
            get(super::availability::availability),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/schemas/events/{file}", get(event_schema))
}

/// The most updates Meta puts in one webhook batch (its documentation; FACTS.md).
const META_MAX_BATCH_ITEMS: usize = 1000;

/// The largest body the control API reads (its requests are small JSON documents; the limit
/// is the one axum applied by default before the bodies were read here).
pub const CONTROL_MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

fn private_routes(state: &AppState) -> Router<AppState> {
    let mut events = Router::new().route("/v1/events", get(events));
    if state.events.require_token {
        events = events.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            control::require_token,
        ));
    }
    Router::new()
        .merge(control::router(state.clone()))
        .merge(events)
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            buffered_body,
        ))
}

fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(
            super::error::json_error_bodies,
        ))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// Reads a control or events request's whole body before its handler runs, within the body
/// read timeout and [`CONTROL_MAX_BODY_BYTES`]: a slow or oversized body is answered 408 or 413
/// as on the hooks, instead of holding the connection for as long as the client likes.
async fn buffered_body(
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
struct Limit {
    bytes: u64,
    of: &'static str,
}

/// [`read_body`] under the body read timeout.
async fn read_body_within(
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

/// Records the outcome and latency of every hook request.
async fn hook(
    state: State<AppState>,
    channel_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(channel_id) =
        channel_id.map_err(|e| ApiError::BadRequest(format!("channel id in the URL: {e}")))?;
    let started = std::time::Instant::now();
    let result = accept(state, &channel_id, request).await;
    let outcome = match &result {
        Ok(response) if response.status() == StatusCode::OK => "duplicate",
        Ok(_) => "accepted",
        Err(ApiError::Unavailable { .. }) => "unavailable",
        Err(_) => "rejected",
    };
    // Unknown channel ids are not labels: a scanner must not grow the metric without bound.
    let channel = if matches!(result, Err(ApiError::NotFound(_))) {
        "unknown".to_owned()
    } else {
        channel_id
    };
    metrics::histogram!("deskgate_hook_duration_seconds", "channel" => channel.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("deskgate_inbound_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
    result
}

async fn accept(
    State(state): State<AppState>,
    channel_id: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let channel_id = channel_id.to_owned();
    let config = state
        .channels
        .get(&channel_id)
        .ok_or_else(|| ApiError::NotFound(format!("no channel {channel_id:?} is configured")))?;
    let (parts, body) = request.into_parts();
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let client =
            super::ratelimit::client_addr(peer.ip(), &parts.headers, &state.trusted_proxies);
        state
            .live
            .current()
            .rate_limits
            .check(&channel_id, client)?;
    }
    channels::check_content_type(config, &parts.headers)?;
    let limit = Limit {
        bytes: config.max_body_bytes,
        of: "this channel's",
    };
    let body = read_body_within(&state, &parts.headers, body, limit).await?;
    let hook = HookRequest {
        channel_id: &channel_id,
        headers: &parts.headers,
        body,
        received_at: Utc::now(),
        blobs: &state.blobs,
    };
    let records = channels::records(config, &hook).await?;
    // More records than one group commit takes would crowd every other input out of the
    // journal's queue (a 1 MiB batch can hold hundreds of thousands of junk entries). A batch
    // as large as Meta sends is always taken, however small journal.max_batch is.
    let most = state.journal.max_batch().max(META_MAX_BATCH_ITEMS);
    if records.len() > most {
        return Err(ApiError::TooManyItems {
            items: records.len(),
            limit: most,
        });
    }
    let appends = records.into_iter().map(|record| {
        let external_id = crate::model::DedupeKey::of(&record).external_id;
        let kind = channels::inspect::item_kind(&record);
        let quarantined = matches!(record, crate::model::Record::Quarantine(_));
        let journal = state.journal.clone();
        async move {
            (
                (external_id, kind, quarantined),
                journal.append(record).await,
            )
        }
    });
    let mut items = Vec::new();
    let mut any_new = false;
    for ((external_id, kind, quarantined), appended) in futures::future::join_all(appends).await {
        let (seq, duplicate) = match appended? {
            Appended::New { seq } => (seq, false),
            Appended::Duplicate { seq } => (seq, true),
        };
        any_new |= !duplicate;
        let mut item = json!({ "external_id": external_id, "kind": kind, "journal_seq": seq, "duplicate": duplicate });
        if quarantined {
            item["quarantined"] = json!(true);
        }
        items.push(item);
    }
    // Meta documents "200 OK" as the answer its webhooks expect; others get 202 for new input.
    let is_meta = matches!(config.kind, ChannelKind::Messenger | ChannelKind::Whatsapp);
    let status = if any_new && !is_meta {
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

/// `GET /hooks/{channel_id}?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: Meta's
/// subscription handshake. 200 with exactly the challenge when the token matches, else 403.
async fn verify_subscription(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let config = state
        .channels
        .get(&channel_id)
        .ok_or_else(|| ApiError::NotFound(format!("no channel {channel_id:?} is configured")))?;
    if config.meta.is_none() {
        return Err(ApiError::NotFound(format!(
            "channel {channel_id:?} has no subscription handshake"
        )));
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
    match channels::meta::verify_subscription(config, &query)? {
        Some(challenge) => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response()),
        None => Err(ApiError::Forbidden(
            "hub.mode must be subscribe and hub.verify_token must match".to_owned(),
        )),
    }
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

#[derive(Default)]
struct EventsQuery {
    after: u64,
    limit: Option<usize>,
    wait: u64,
}

impl EventsQuery {
    /// Reads `after`, `limit` and `wait`; a refusal names the parameter and what it got.
    fn parse(query: &str) -> Result<EventsQuery, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
        let mut parsed = EventsQuery::default();
        for (name, value) in pairs {
            let number = || {
                value.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "{name}: must be a whole number from 0 to {}, got {value:?}",
                        u64::MAX
                    ))
                })
            };
            match name.as_str() {
                "after" => parsed.after = number()?,
                "limit" => parsed.limit = Some(usize::try_from(number()?).unwrap_or(usize::MAX)),
                "wait" => parsed.wait = number()?,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "{name}: unknown parameter (expected after, limit or wait)"
                    )))
                }
            }
        }
        Ok(parsed)
    }
}

/// `GET /v1/events?after=SEQ&limit=N&wait=SECS`: events after `after`, long-polling up to `wait`
/// seconds when there are none yet.
async fn events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = EventsQuery::parse(query.as_deref().unwrap_or(""))?;
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

/// `GET /v1/schemas/events/{type}.json`: the JSON Schema of an event type's `data`, which every
/// event names in `dataschema`. Public: it says nothing about this instance's data.
async fn event_schema(Path(file): Path<String>) -> Result<Response, ApiError> {
    let event_type = file
        .strip_suffix(".json")
        .and_then(crate::events::EventType::parse)
        .ok_or_else(|| ApiError::NotFound(format!("no event type has the schema {file:?}")))?;
    let schema = crate::events::data::schema::text(event_type);
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], schema).into_response())
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

/// Prometheus text exposition. Gauges of the pipeline's positions are read at scrape time.
async fn metrics(State(state): State<AppState>) -> Response {
    let position = *state.position.borrow();
    let durable = *state.journal.durable().borrow();
    metrics::gauge!("deskgate_journal_queued").set(state.journal.backlog() as f64);
    metrics::gauge!("deskgate_journal_durable_seq").set(durable as f64);
    metrics::gauge!("deskgate_processor_cursor").set(position.cursor as f64);
    metrics::gauge!("deskgate_processor_lag").set(durable.saturating_sub(position.cursor) as f64);
    metrics::gauge!("deskgate_outbox_last_seq").set(position.outbox as f64);
    // Sinks report their lag as they move; refreshed here so that every sink shows, moving
    // or not.
    for (name, sink) in state.sinks.statuses() {
        let healthy = if sink.healthy { 1.0 } else { 0.0 };
        metrics::gauge!("deskgate_sink_lag_events", "sink" => name.clone())
            .set(sink.lag_events as f64);
        metrics::gauge!("deskgate_sink_lag_seconds", "sink" => name.clone()).set(sink.lag_seconds);
        metrics::gauge!("deskgate_sink_healthy", "sink" => name).set(healthy);
    }
    for (channel, mailbox) in state.mailboxes.snapshot() {
        let connected = if mailbox.state.is_connected() {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("deskgate_imap_connected", "channel" => channel).set(connected);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`. 503 while the state cannot be written, while shutting down, or while a sink
/// is over its lag limit (`unready`). 200 `degraded` while a sink fails under its limits or a
/// mailbox cannot reach its server: ingestion goes on (events wait in the outbox, the hooks
/// work). 200 `ready` otherwise. The body says which sink or mailbox and why.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.store.failed() {
        let body = json!({
            "status": "storage_failed",
            "detail": "a write to the state directory failed (is the disk full?); inputs answer 503 until it has room again",
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        )
            .into_response();
    }
    let sinks = state.sinks.statuses();
    let mailboxes = state.mailboxes.snapshot();
    let mut problems = Vec::new();
    for (name, sink) in &sinks {
        let error = sink.last_error.as_deref().unwrap_or("no error reported");
        if sink.lagging {
            problems.push(format!(
                "sink {name}: {} events, {:.0} s behind, over its limit ({error})",
                sink.lag_events, sink.lag_seconds
            ));
        } else if sink.disabled {
            problems.push(format!(
                "sink {name}: {error}; POST /v1/control/sinks/{name}/enable delivers again"
            ));
        } else if !sink.healthy {
            problems.push(format!("sink {name}: failing: {error}"));
        }
    }
    for (channel, mailbox) in &mailboxes {
        if mailbox.state.is_down() {
            let error = mailbox.last_error.as_deref().unwrap_or("no error reported");
            problems.push(format!("mailbox {channel}: {error}"));
        }
    }
    let unready = sinks.values().any(|sink| sink.lagging);
    let (code, status) = match (unready, problems.is_empty()) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "unready"),
        (false, false) => (StatusCode::OK, "degraded"),
        (false, true) => (StatusCode::OK, "ready"),
    };
    let mut body = json!({ "status": status, "problems": problems, "sinks": sinks });
    if !mailboxes.is_empty() {
        body["mailboxes"] = json!(mailboxes);
    }
    (code, Json(body)).into_response()
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
