//! Every HTTP route: inbound hooks, the events pull API, status and health.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::{BufMut, Bytes, BytesMut};
use chrono::Utc;
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::control::{self, Tokens};
use super::error::{ApiError, ErrorBody};
use super::openapi;
use crate::channels::email::imap::MailboxRegistry;
use crate::channels::{self, HookRequest};
use crate::config::{ChannelConfig, ChannelKind, EventsConfig};
use crate::events::sinks::Sinks;
use crate::events::OutboxReader;
use crate::journal::{Appended, JournalHandle};
use crate::live::LiveHandle;
use crate::model::Position;
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
    /// The region of phone numbers written without a country code (`contacts.default_region`).
    pub phone_region: crate::identity::Region,
}

/// Every route on one listener.
pub fn router(state: AppState) -> Router {
    finish(public_routes().merge(private_routes(Some(&state))), state)
}

/// What the internet reaches: the inbound hooks (each channel checks its own signatures) and
/// health checks.
pub fn public_router(state: AppState) -> Router {
    finish(public_routes(), state)
}

/// What only the ticket store, admins and monitoring reach: events, status, metrics and the
/// control API. Served on `server.control_listen` when that is set.
pub fn private_router(state: AppState) -> Router {
    finish(private_routes(Some(&state)), state)
}

/// Every route the routers serve, without their layers, documented: what
/// [`super::openapi::document`] describes.
pub(super) fn documented_routes() -> OpenApiRouter<AppState> {
    public_routes().merge(private_routes(None))
}

fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(hook, verify_subscription))
        .routes(routes!(super::availability::availability))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(event_schema))
}

/// The most updates Meta puts in one webhook batch (its documentation; FACTS.md).
const META_MAX_BATCH_ITEMS: usize = 1000;

/// The largest body the control API reads (its requests are small JSON documents; the limit
/// is the one axum applied by default before the bodies were read here).
pub const CONTROL_MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

/// The private routes behind their layers, which need the state; without a state (for the
/// document) the same routes come back without them. Either way each layer's own answers are
/// documented on the routes it guards.
fn private_routes(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    let control = openapi::behind_token(control::routes(), openapi::Token::Required);
    let events = openapi::behind_token(
        OpenApiRouter::new().routes(routes!(events)),
        openapi::Token::IfConfigured,
    );
    let require_token_on_events = state.is_some_and(|state| state.events.require_token);
    let routes = guarded(control, state, true)
        .merge(guarded(events, state, require_token_on_events))
        .routes(routes!(status))
        .routes(routes!(metrics))
        .routes(routes!(openapi::openapi_json));
    let routes = openapi::with_answers(routes, openapi::BODY_READ_ANSWERS);
    match state {
        Some(state) => routes.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            buffered_body,
        )),
        None => routes,
    }
}

/// `routes` behind the bearer token check when there is a state and `require` is set.
fn guarded(
    routes: OpenApiRouter<AppState>,
    state: Option<&AppState>,
    require: bool,
) -> OpenApiRouter<AppState> {
    match state {
        Some(state) if require => routes.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            control::require_token,
        )),
        _ => routes,
    }
}

fn finish(routes: OpenApiRouter<AppState>, state: AppState) -> Router {
    Router::from(routes)
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

/// A hook's answer: what became of each item the request carried.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct HookAnswer {
    /// Always `accepted`.
    status: &'static str,
    /// Every item had been journaled before (a resend): nothing is new.
    duplicate: bool,
    items: Vec<HookItem>,
}

/// One item (message, receipt, notice) of a hook request, as journaled.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct HookItem {
    /// The id it is deduplicated by (the channel's message id, or the mail's Message-ID).
    external_id: String,
    /// `message`, `echo`, `postback`, `reaction`, `delivery_status`, `other`, or `mail` (an
    /// unreadable mail kept raw in the quarantine).
    kind: &'static str,
    /// Its place in the journal.
    journal_seq: u64,
    /// It had been journaled before; `journal_seq` is the first one's.
    duplicate: bool,
    /// Set aside in the quarantine instead of applied (present only when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    quarantined: bool,
}

/// `POST /hooks/{channel_id}`: inbound input for a configured channel. Records the outcome and
/// latency of every hook request.
#[utoipa::path(
    post,
    path = "/hooks/{channel_id}",
    tag = "hooks",
    params(("channel_id" = String, Path, description = "A configured channel's id.")),
    request_body(
        description = "The channel's `kind` decides the format (docs/channels.md), at most its \
            `max_body_bytes`: `api` takes its JSON message; `messenger` and `whatsapp` take \
            Meta's webhook JSON, signed in `X-Hub-Signature-256`; `chat` takes the widget's \
            signed JSON; `form` takes JSON, urlencoded or multipart fields; `email` takes one \
            raw RFC 5322 mail (as `message/rfc822`, `application/octet-stream` or `text/plain`).",
        content(
            ("application/json"),
            ("application/x-www-form-urlencoded"),
            ("multipart/form-data"),
            ("message/rfc822"),
            ("application/octet-stream"),
            ("text/plain"),
        ),
    ),
    responses(
        (status = 202, description = "Something new was journaled (all kinds but Meta's).", body = HookAnswer),
        (status = 200, description = "Journaled (Meta's channels always answer 200), or every item is a duplicate.", body = HookAnswer),
        (status = 400, description = "Malformed body or channel id.", body = ErrorBody),
        (status = 401, description = "A Meta, chat or form signature is missing or does not match the body.", body = ErrorBody),
        (status = 404, description = "No channel with this id is configured.", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `server.body_read_timeout_secs`.", body = ErrorBody),
        (status = 413, description = "The body is over the channel's `max_body_bytes` (refused before reading when `Content-Length` says so), or carries more items than one journal commit takes.", body = ErrorBody),
        (status = 415, description = "A content type the channel's kind does not read.", body = ErrorBody),
        (status = 422, description = "Well-formed but unusable, naming the field (code `unprocessable`); a web form lacking required fields (code `missing_fields`, all listed in `missing`).", body = ErrorBody),
        (status = 429, description = "A chat or form client over its rate limit.", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The journal queue is full or did not confirm the write in time: retry (what was kept is then answered as a duplicate).", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
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
        region: state.phone_region,
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
        let (journal_seq, duplicate) = match appended? {
            Appended::New { seq } => (seq, false),
            Appended::Duplicate { seq } => (seq, true),
        };
        any_new |= !duplicate;
        items.push(HookItem {
            external_id,
            kind,
            journal_seq,
            duplicate,
            quarantined,
        });
    }
    // Meta documents "200 OK" as the answer its webhooks expect; others get 202 for new input.
    let is_meta = matches!(config.kind, ChannelKind::Messenger | ChannelKind::Whatsapp);
    let status = if any_new && !is_meta {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let answer = HookAnswer {
        status: "accepted",
        duplicate: !any_new && !items.is_empty(),
        items,
    };
    Ok((status, Json(answer)).into_response())
}

/// `GET /hooks/{channel_id}?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: Meta's
/// subscription handshake. 200 with exactly the challenge when the token matches, else 403.
#[utoipa::path(
    get,
    path = "/hooks/{channel_id}",
    tag = "hooks",
    params(
        ("channel_id" = String, Path, description = "A configured Messenger or WhatsApp channel's id."),
        ("hub.mode" = String, Query, description = "`subscribe`."),
        ("hub.verify_token" = String, Query, description = "The channel's `meta.verify_token`."),
        ("hub.challenge" = String, Query, description = "Echoed back when the token matches."),
    ),
    responses(
        (status = 200, description = "Exactly the challenge.", body = String, content_type = "text/plain"),
        (status = 400, description = "A query string that cannot be read.", body = ErrorBody),
        (status = 403, description = "`hub.mode` is not `subscribe` or the verify token does not match.", body = ErrorBody),
        (status = 404, description = "No channel with this id, or one without a subscription handshake.", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("after" = Option<u64>, Query, description = "The last seq already read (default 0)."),
        ("limit" = Option<u64>, Query, description = "At most this many events (default 100, at most `events.max_limit`)."),
        ("wait" = Option<u64>, Query, description = "Seconds to wait when there are none yet (default 0, at most `events.max_wait_secs`)."),
    ),
    responses(
        (status = 200, description = "`{\"events\": [...], \"next\": SEQ}`: CloudEvents in order (each one's `data` has the schema its `dataschema` names, docs/events.md), and the seq to ask after next.", body = Object),
        (status = 400, description = "A query parameter that is unknown or not a whole number, named.", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/schemas/events/{file}",
    tag = "schemas",
    params(("file" = String, Path, description = "An event type and `.json`: `deskgate.ticket.created.json`.")),
    responses(
        (status = 200, description = "The JSON Schema (draft 2020-12) of the event type's `data`, as committed in `schemas/events/`.", body = Object, content_type = "application/schema+json"),
        (status = 404, description = "No event type has this schema.", body = ErrorBody),
    ),
)]
async fn event_schema(Path(file): Path<String>) -> Result<Response, ApiError> {
    let event_type = file
        .strip_suffix(".json")
        .and_then(crate::events::EventType::parse)
        .ok_or_else(|| ApiError::NotFound(format!("no event type has the schema {file:?}")))?;
    let schema = crate::events::data::schema::text(event_type);
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], schema).into_response())
}

/// Where the pipeline stands: what is journaled, applied, and sequenced.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "status",
    responses((status = 200, description = "`journal` (`durable_seq`, `queued`), `processor` (`cursor`), `outbox` (`last_seq`) and `sinks` (each sink's cursor, lag and health).", body = Object)),
)]
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
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    responses((status = 200, description = "Prometheus text exposition (docs/metrics.md lists the metrics).", body = String, content_type = "text/plain; version=0.0.4")),
)]
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

/// `GET /healthz`: the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)),
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`. 503 while the state cannot be written, while shutting down, or while a sink
/// is over its lag limit (`unready`). 200 `degraded` while a sink fails under its limits or a
/// mailbox cannot reach its server: ingestion goes on (events wait in the outbox, the hooks
/// work). 200 `ready` otherwise. The body says which sink or mailbox and why.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "`status` `ready` or `degraded`, with `problems` (why degraded), each sink's lag and health in `sinks`, and each IMAP mailbox's `state`, `last_sync`, `last_uid` and `last_error` in `mailboxes`.", body = Object),
        (status = 503, description = "`status` `unready` (a sink over its lag limit; same fields as 200), `storage_failed` (with `detail`) or `shutting_down`.", body = Object),
    ),
)]
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
    ErrorBody::response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
        "method_not_allowed",
    )
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal("the request could not be handled".to_owned()).into_response()
}
