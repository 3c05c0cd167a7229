//! Metrics: the Prometheus recorder behind `GET /metrics`, and the metrics deskgate itself
//! records at the HTTP edge. Other modules record with the `metrics` macros where things happen;
//! names start with `deskgate_`, durations end in `_seconds` (rendered as histograms).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for request and delivery latencies, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns a handle that renders it. A second
/// call (a second app in one process, as in the bench) shares the first recorder.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .expect("the bucket list is static and non-empty");
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    handle
                }
                // Another recorder is installed (an embedding program's): render an empty set
                // rather than fail start-up.
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "deskgate_inbound_total",
        "Inbound hook requests by channel and outcome (accepted, duplicate, rejected, unavailable)"
    );
    describe_histogram!(
        "deskgate_hook_duration_seconds",
        Unit::Seconds,
        "Time from a hook request's arrival to its answer, by channel"
    );
    describe_gauge!(
        "deskgate_journal_queued",
        "Records waiting for the journal writer"
    );
    describe_gauge!(
        "deskgate_journal_durable_seq",
        "Highest journal sequence number on disk"
    );
    describe_gauge!(
        "deskgate_processor_cursor",
        "Last journal record the processor applied"
    );
    describe_gauge!(
        "deskgate_processor_lag",
        "Journal records durable but not yet applied by the processor"
    );
    describe_gauge!(
        "deskgate_outbox_last_seq",
        "Last event sequence number in the outbox"
    );
    describe_counter!(
        "deskgate_quarantined_total",
        "Records set aside by the processor, by channel"
    );
    describe_counter!(
        "deskgate_config_reloads_total",
        "SIGHUP reloads by outcome (applied, rejected)"
    );
    describe_counter!(
        "deskgate_rate_limited_total",
        "Chat and form requests answered 429, by channel"
    );
    describe_counter!(
        "deskgate_outbound_total",
        "Outgoing messages by route (via) and final outcome (sent, failed, capped)"
    );
    describe_gauge!(
        "deskgate_sink_lag_events",
        "Events in the outbox a sink has not delivered yet"
    );
    describe_gauge!(
        "deskgate_sink_lag_seconds",
        "Age of the oldest event a sink has not delivered yet"
    );
    describe_gauge!(
        "deskgate_sink_healthy",
        "1 while a sink delivers, 0 while its deliveries fail"
    );
    describe_histogram!(
        "deskgate_sink_request_duration_seconds",
        Unit::Seconds,
        "Time of one webhook sink request, answered or not, by sink"
    );
    describe_gauge!(
        "deskgate_imap_last_sync_timestamp_seconds",
        "Unix time of a mailbox's last complete sync, by channel"
    );
    describe_gauge!(
        "deskgate_imap_connected",
        "1 while a mailbox is connected to its server, else 0, by channel"
    );
}
