//! Status and health: `/v1/status` (where the pipeline stands), `/metrics` (Prometheus),
//! `/healthz` (alive) and `/readyz` (ready to take traffic, with what is wrong).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde_json::json;

use super::routes::AppState;

/// Where the pipeline stands: what is journaled, applied, and sequenced.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "status",
    responses((status = 200, description = "`journal` (`durable_seq`, `queued`), `processor` (`cursor`), `outbox` (`last_seq`) and `sinks` (each sink's cursor, lag and health).", body = Object)),
)]
pub(super) async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
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
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
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
pub(super) async fn healthz() -> Json<serde_json::Value> {
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
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
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
