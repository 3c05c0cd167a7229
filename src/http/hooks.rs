//! `/hooks/{channel_id}`: inbound input for each configured channel (journaled, answered with
//! what became of each item) and Meta's subscription handshake.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use http::{header, StatusCode};

use super::body::{read_body_within, Limit};
use super::error::{ApiError, ErrorBody};
use super::routes::AppState;
use crate::channels::{self, HookRequest};
use crate::config::ChannelKind;
use crate::journal::{Appended, JournalHandle};
use crate::model::{DedupeKey, Record};

/// The most updates Meta puts in one webhook batch (its documentation; FACTS.md).
const META_MAX_BATCH_ITEMS: usize = 1000;

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
pub(super) async fn hook(
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
    let mut records = channels::records(config, &hook).await?;
    state.profiles.enrich(&channel_id, &mut records).await;
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
    let (items, any_new) = journal_items(&state.journal, records).await?;
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

/// Journals a request's records together (one group commit takes them all) and says what
/// became of each, and whether any was new.
async fn journal_items(
    journal: &JournalHandle,
    records: Vec<Record>,
) -> Result<(Vec<HookItem>, bool), ApiError> {
    let appends = records.into_iter().map(|record| {
        let external_id = DedupeKey::of(&record).external_id;
        let kind = channels::inspect::item_kind(&record);
        let quarantined = matches!(record, Record::Quarantine(_));
        let journal = journal.clone();
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
    Ok((items, any_new))
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
pub(super) async fn verify_subscription(
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
