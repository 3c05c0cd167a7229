//! `GET /v1/channels/{id}/availability`: the question a website chat widget asks before it
//! offers a live chat. Public (on the hooks' listener, no token), rate-limited per client like
//! the channel's own posts, and naming no one: the answer is `available`, or `away` with the
//! reason, so the widget can say "we'll reply by mail" instead. CORS-open, as a widget on the
//! help desk's website asks it from the visitor's browser.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderMap, HeaderValue};
use serde_json::json;

use super::error::{ApiError, ErrorBody};
use super::routes::AppState;
use crate::config::ChannelKind;
use crate::routing;

#[utoipa::path(
    get,
    path = "/v1/channels/{channel_id}/availability",
    tag = "health",
    params(("channel_id" = String, Path, description = "A configured chat channel's id.")),
    responses(
        (status = 200, description = "`channel`, and `status` `available`, or `away` with the `reason` (`outside_office_hours` or `nobody_available`); CORS-open, not cached.", body = Object),
        (status = 404, description = "No chat channel with this id is configured.", body = ErrorBody),
        (status = 429, description = "The client is over the channel's rate limit.", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn availability(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_chat = || ApiError::NotFound(format!("no chat channel {channel_id:?} is configured"));
    let config = state.channels.get(&channel_id).ok_or_else(not_chat)?;
    if config.kind != ChannelKind::Chat {
        return Err(not_chat());
    }
    let live = state.live.current();
    let client = super::ratelimit::client_addr(peer.ip(), &headers, &state.trusted_proxies);
    live.rate_limits.check(&channel_id, client)?;
    let rules = live.rules.channels.get(&channel_id).ok_or_else(not_chat)?;
    let directory = crate::tickets::directory_snapshot(&state.store, &live.rules)?;
    let answer = routing::availability(rules, &directory, chrono::Utc::now());
    let mut body = json!({ "channel": channel_id });
    if let serde_json::Value::Object(fields) = json!(answer) {
        body.as_object_mut().expect("an object").extend(fields);
    }
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Ok(response)
}
