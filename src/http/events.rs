//! `GET /v1/events`, the events pull API (a long poll after a sequence), and the JSON Schema
//! of each event type's `data`.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use http::header;

use super::error::{ApiError, ErrorBody};

use super::routes::AppState;

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
pub(super) async fn events(
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
pub(super) async fn event_schema(Path(file): Path<String>) -> Result<Response, ApiError> {
    let event_type = file
        .strip_suffix(".json")
        .and_then(crate::events::EventType::parse)
        .ok_or_else(|| ApiError::NotFound(format!("no event type has the schema {file:?}")))?;
    let schema = crate::events::data::schema::text(event_type);
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], schema).into_response())
}
