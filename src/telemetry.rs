//! Metrics: the Prometheus recorder behind `GET /metrics`, and [`SERIES`], the one list of every
//! series deskgate records, with its type, labels and help text. Other modules record with the
//! `metrics` macros where things happen; [`start`] describes every series and registers each
//! label set it can know from the config at zero, so that `rate()` and `absent()` work from the
//! first scrape. `docs/metrics.md` is rendered from the list ([`reference`](fn@reference)) and a test keeps
//! the two the same. Names start with `deskgate_`, durations end in `_seconds` (histograms).

use std::sync::OnceLock;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::sinks::SinkKind;
use crate::config::{ChannelKind, Config};

/// Histogram buckets for request and delivery latencies, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// What a series is, in Prometheus terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// Which configured channels a `channel` label takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    All,
    Email,
    /// Email channels with an `[imap]` table.
    Imap,
    /// Messenger and WhatsApp.
    Meta,
    ChatAndForm,
    Form,
}

impl Channels {
    fn matches(self, kind: ChannelKind, has_imap: bool) -> bool {
        match self {
            Channels::All => true,
            Channels::Email => kind == ChannelKind::Email,
            Channels::Imap => kind == ChannelKind::Email && has_imap,
            Channels::Meta => matches!(kind, ChannelKind::Messenger | ChannelKind::Whatsapp),
            Channels::ChatAndForm => matches!(kind, ChannelKind::Chat | ChannelKind::Form),
            Channels::Form => kind == ChannelKind::Form,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Channels::All => "every channel id",
            Channels::Email => "email channel ids",
            Channels::Imap => "ids of email channels with `[imap]`",
            Channels::Meta => "messenger and whatsapp channel ids",
            Channels::ChatAndForm => "chat and form channel ids",
            Channels::Form => "form channel ids",
        }
    }
}

/// Where a label's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// A fixed set the code records.
    Fixed(&'static [&'static str]),
    /// Ids of configured channels (`[channels.<id>]`).
    Channels(Channels),
    /// Names of configured sinks (`[sinks.<name>]`); `true`: webhook sinks only.
    Sinks { webhook_only: bool },
}

/// One label of a series and the values it takes.
#[derive(Debug, Clone, Copy)]
pub struct Label {
    pub name: &'static str,
    pub values: Values,
}

/// One series: what the registration, the docs and the tests all read.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub kind: Type,
    pub unit: Option<Unit>,
    pub labels: &'static [Label],
    pub help: &'static str,
}

const fn series(
    name: &'static str,
    kind: Type,
    labels: &'static [Label],
    help: &'static str,
) -> Series {
    Series {
        name,
        kind,
        unit: None,
        labels,
        help,
    }
}

const fn seconds(series: Series) -> Series {
    Series {
        unit: Some(Unit::Seconds),
        ..series
    }
}

const fn channel(which: Channels) -> Label {
    Label {
        name: "channel",
        values: Values::Channels(which),
    }
}

const fn fixed(name: &'static str, values: &'static [&'static str]) -> Label {
    Label {
        name,
        values: Values::Fixed(values),
    }
}

const SINK: Label = Label {
    name: "sink",
    values: Values::Sinks {
        webhook_only: false,
    },
};
const WEBHOOK_SINK: Label = Label {
    name: "sink",
    values: Values::Sinks { webhook_only: true },
};
const ALL_CHANNELS: Label = channel(Channels::All);
const IMAP_CHANNELS: Label = channel(Channels::Imap);

/// `MailboxError::kind` in `channels/email/imap/conn.rs`.
const IMAP_ERROR_KINDS: &[&str] = &[
    "auth",
    "password_file",
    "timeout",
    "connect",
    "tls",
    "imap",
    "protocol",
    "journal",
    "state",
    "blobs",
];
/// `channels::inspect::item_kind` for what a Meta webhook carries.
const WEBHOOK_ITEM_KINDS: &[&str] = &[
    "message",
    "echo",
    "postback",
    "reaction",
    "delivery_status",
    "other",
];

use Type::{Counter, Gauge, Histogram};

/// Every series deskgate records. Adding a `metrics::` call for a new name means adding it
/// here; the docs page and `tests/ops/prometheus.rs` fail until it is.
#[rustfmt::skip]
pub const SERIES: &[Series] = &[
    // Inbound.
    series("deskgate_inbound_total", Counter,
        &[ALL_CHANNELS, fixed("outcome", &["accepted", "duplicate", "rejected", "unavailable"])],
        "Inbound requests and fetched mails by channel and outcome; unknown channel ids count as channel=\"unknown\""),
    seconds(series("deskgate_hook_duration_seconds", Histogram, &[ALL_CHANNELS],
        "Time from a hook request's arrival to its answer, by channel")),
    series("deskgate_rate_limited_total", Counter, &[channel(Channels::ChatAndForm)],
        "Chat and form requests answered 429, by channel"),
    series("deskgate_webhook_items_total", Counter,
        &[channel(Channels::Meta), fixed("kind", WEBHOOK_ITEM_KINDS)],
        "Items in verified Meta webhook payloads, by channel and kind"),
    series("deskgate_webhook_signature_failures_total", Counter, &[channel(Channels::Meta)],
        "Meta webhook requests refused for a missing or wrong signature, by channel"),
    series("deskgate_email_parsed_total", Counter,
        &[channel(Channels::Email), fixed("outcome", &["message", "quarantined"])],
        "Mails parsed into a message or set aside as unreadable, by channel"),
    series("deskgate_form_honeypot_total", Counter, &[channel(Channels::Form)],
        "Form submissions that filled the honeypot field, answered 200 and dropped, by channel"),
    // Journal and processor.
    series("deskgate_journal_queued", Gauge, &[], "Records waiting for the journal writer"),
    series("deskgate_journal_durable_seq", Gauge, &[], "Highest journal sequence number on disk"),
    series("deskgate_journal_compacted_total", Counter, &[],
        "Journal records deleted by retention"),
    series("deskgate_processor_cursor", Gauge, &[], "Last journal record the processor applied"),
    series("deskgate_processor_lag", Gauge, &[],
        "Journal records durable but not yet applied by the processor"),
    series("deskgate_outbox_last_seq", Gauge, &[], "Last event sequence number in the outbox"),
    series("deskgate_quarantined_total", Counter, &[ALL_CHANNELS],
        "Records set aside by the processor, by channel"),
    series("deskgate_routing_decisions_total", Counter,
        &[ALL_CHANNELS, fixed("outcome", &["assigned", "unassigned"])],
        "New tickets routed, by channel and whether a rule assigned them"),
    series("deskgate_status_triggers_total", Counter,
        &[fixed("trigger", &["customer_replied", "agent_emailed"])],
        "Ticket status changes made by a status trigger, by trigger"),
    series("deskgate_history_messages_total", Counter, &[ALL_CHANNELS],
        "Messages imported as history (no ticket notifications), by channel"),
    series("deskgate_consent_held_messages_total", Counter, &[channel(Channels::Meta)],
        "Messenger messages kept without a ticket until their sender consents, by channel"),
    series("deskgate_consent_given_total", Counter, &[channel(Channels::Meta)],
        "Explicit consents given on Messenger pages (agree button tapped), by channel"),
    series("deskgate_form_fields_ignored_total", Counter,
        &[ALL_CHANNELS, fixed("field", &["pipeline", "status"])],
        "Ticket properties given but not used (no such pipeline or status), by channel and field"),
    series("deskgate_tickets_forgotten_total", Counter, &[],
        "Closed tickets forgotten after routing.closed_retention_secs"),
    series("deskgate_blobs_deleted_total", Counter, &[],
        "Attachment blobs past the journal's window that nothing names, deleted"),
    // Sinks.
    series("deskgate_sink_lag_events", Gauge, &[SINK],
        "Events in the outbox a sink has not delivered yet"),
    seconds(series("deskgate_sink_lag_seconds", Gauge, &[SINK],
        "Age of the oldest event a sink has not delivered yet")),
    series("deskgate_sink_healthy", Gauge, &[SINK],
        "1 while a sink delivers, 0 while its deliveries fail"),
    series("deskgate_sink_disabled", Gauge, &[SINK],
        "1 while a webhook endpoint that answered 410 Gone stays disabled (until POST /v1/control/sinks/{name}/enable)"),
    series("deskgate_sink_delivered_total", Counter, &[SINK], "Events a sink delivered"),
    series("deskgate_sink_retried_total", Counter, &[SINK], "Failed sink delivery attempts (each is retried until the sink gives up)"),
    series("deskgate_sink_dead_lettered_total", Counter, &[SINK],
        "Events a sink gave up on and set aside"),
    seconds(series("deskgate_sink_request_duration_seconds", Histogram, &[WEBHOOK_SINK],
        "Time of one webhook sink request, answered or not, by sink")),
    series("deskgate_outbox_compacted_total", Counter, &[],
        "Outbox events deleted by retention once every sink passed them"),
    // IMAP.
    seconds(series("deskgate_imap_last_sync_timestamp_seconds", Gauge, &[IMAP_CHANNELS],
        "Unix time of a mailbox's last complete sync (0: none yet), by channel")),
    series("deskgate_imap_connected", Gauge, &[IMAP_CHANNELS],
        "1 while a mailbox is connected to its server, else 0, by channel"),
    series("deskgate_imap_fetched_total", Counter, &[IMAP_CHANNELS],
        "Mails fetched from a mailbox, by channel"),
    series("deskgate_imap_connection_errors_total", Counter,
        &[IMAP_CHANNELS, fixed("kind", IMAP_ERROR_KINDS)],
        "Mailbox connections or sessions that failed, by channel and kind of error"),
    series("deskgate_imap_resyncs_total", Counter, &[IMAP_CHANNELS],
        "Full mailbox resyncs after the server changed UIDVALIDITY, by channel"),
    // Outbound.
    series("deskgate_outbound_total", Counter,
        &[fixed("via", &["email", "messenger", "whatsapp"]),
          fixed("outcome", &["sent", "failed", "capped"])],
        "Outgoing messages by route (via) and final outcome"),
    series("deskgate_outbound_resent_after_crash_total", Counter, &[],
        "Outgoing messages sent again after a crash left their outcome unknown"),
    // Operations.
    series("deskgate_config_reloads_total", Counter, &[fixed("outcome", &["applied", "rejected"])],
        "SIGHUP reloads by outcome"),
];

/// Installs the process-wide recorder once, describes and registers every series for `config`,
/// and returns a handle that renders it. A second call (a second app in one process, as in the
/// bench) shares the first recorder and registers its own channels and sinks too.
pub fn start(config: &Config) -> PrometheusHandle {
    let handle = HANDLE.get_or_init(install).clone();
    register(config);
    handle
}

fn install() -> PrometheusHandle {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
        .expect("the bucket list is static and non-empty");
    builder.install_recorder().unwrap_or_else(|error| {
        // Another recorder is installed (an embedding program's): render an empty set rather
        // than fail start-up.
        tracing::warn!(%error, "metrics recorder not installed");
        PrometheusBuilder::new().build_recorder().handle()
    })
}

/// Describes every series in [`SERIES`] and registers every label set it can know from
/// `config`, at zero. Registering again (a second app in one process) changes no value.
fn register(config: &Config) {
    for series in SERIES {
        let name = series.name;
        let help = series.help;
        match (series.kind, series.unit) {
            (Type::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Type::Counter, None) => metrics::describe_counter!(name, help),
            (Type::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Type::Gauge, None) => metrics::describe_gauge!(name, help),
            (Type::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Type::Histogram, None) => metrics::describe_histogram!(name, help),
        }
        for labels in label_sets(series, config) {
            // Taking a handle creates the series; a counter's or gauge's value stays as it is.
            match series.kind {
                Type::Counter => drop(metrics::counter!(name, &labels)),
                Type::Gauge => drop(metrics::gauge!(name, &labels)),
                Type::Histogram => drop(metrics::histogram!(name, &labels)),
            }
        }
    }
}

/// Every combination of a series' label values under `config`: one empty set for a series
/// without labels, none when a label has no values (no channel of that kind configured).
pub fn label_sets(series: &Series, config: &Config) -> Vec<Vec<(&'static str, String)>> {
    let mut sets = vec![Vec::new()];
    for label in series.labels {
        let values = label_values(label.values, config);
        sets = sets
            .into_iter()
            .flat_map(|set| {
                values.iter().map(move |value| {
                    let mut set = set.clone();
                    set.push((label.name, value.clone()));
                    set
                })
            })
            .collect();
    }
    sets
}

fn label_values(values: Values, config: &Config) -> Vec<String> {
    match values {
        Values::Fixed(values) => values.iter().map(|v| (*v).to_owned()).collect(),
        Values::Channels(which) => config
            .channels
            .iter()
            .filter(|(_, channel)| which.matches(channel.kind, channel.imap.is_some()))
            .map(|(id, _)| id.clone())
            .collect(),
        Values::Sinks { webhook_only } => config
            .sinks
            .iter()
            .filter(|(_, sink)| !webhook_only || sink.kind == SinkKind::Webhook)
            .map(|(name, _)| name.clone())
            .collect(),
    }
}

/// The table of `docs/metrics.md`, rendered from [`SERIES`].
pub fn reference() -> String {
    let mut table = String::from("| series | type | labels | help |\n| --- | --- | --- | --- |\n");
    for series in SERIES {
        let labels: Vec<String> = series
            .labels
            .iter()
            .map(|label| match label.values {
                Values::Fixed(values) => format!("`{}`: {}", label.name, values.join(", ")),
                Values::Channels(which) => format!("`{}`: {}", label.name, which.describe()),
                Values::Sinks { webhook_only } => format!(
                    "`{}`: {}",
                    label.name,
                    if webhook_only {
                        "webhook sink names"
                    } else {
                        "every sink name"
                    }
                ),
            })
            .collect();
        let kind = match series.unit {
            Some(unit) => format!("{} ({})", series.kind.name(), unit.as_str()),
            None => series.kind.name().to_owned(),
        };
        table.push_str(&format!(
            "| `{}` | {kind} | {} | {} |\n",
            series.name,
            if labels.is_empty() {
                "none".to_owned()
            } else {
                labels.join("; ")
            },
            series.help.replace('|', "\\|")
        ));
    }
    table
}
