//! The routers: which routes each listener serves, behind which layers (token, body reading),
//! and the state every handler reaches ([`AppState`]). The handlers live by what they serve:
//! `hooks`, `events`, `health`, and the control API modules.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::Router;
use http::StatusCode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::control::{self, Tokens};
use super::error::{ApiError, ErrorBody};
use super::{body, events, health, hooks, openapi};
use crate::channels::email::imap::MailboxRegistry;
use crate::config::{ChannelConfig, EventsConfig};
use crate::events::sinks::Sinks;
use crate::events::OutboxReader;
use crate::journal::JournalHandle;
use crate::live::LiveHandle;
use crate::model::Position;
use crate::store::{Blobs, Store};

/// What every handler can reach. axum clones it for every request, so it is one reference
/// count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles behind [`AppState`].
pub struct Shared {
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
    /// Messenger customers' profiles, looked up before their messages are journaled.
    pub profiles: Arc<crate::channels::meta::profile::Profiles>,
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
        .routes(routes!(hooks::hook, hooks::verify_subscription))
        .routes(routes!(super::availability::availability))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(events::event_schema))
}

/// The private routes behind their layers, which need the state; without a state (for the
/// document) the same routes come back without them. Either way each layer's own answers are
/// documented on the routes it guards.
fn private_routes(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    let control = openapi::behind_token(control::routes(), openapi::Token::Required);
    let events = openapi::behind_token(
        OpenApiRouter::new().routes(routes!(events::events)),
        openapi::Token::IfConfigured,
    );
    let require_token_on_events = state.is_some_and(|state| state.events.require_token);
    let routes = guarded(control, state, true)
        .merge(guarded(events, state, require_token_on_events))
        .routes(routes!(health::status))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::openapi_json));
    let routes = openapi::with_answers(routes, openapi::BODY_READ_ANSWERS);
    match state {
        Some(state) => routes.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body::buffered_body,
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
