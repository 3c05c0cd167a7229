//! The soak run (bench mode `soak`): a steady help desk on one deskgate for a long time, without faults. The
//! mixed load of `chaos` (every kind of channel, acknowledgements by SMTP, the NATS sink) comes
//! at a steady rate from a bounded population of returning customers (`--customers` per lane),
//! and an agent follows the events and closes every ticket left idle for `--close-after-secs`
//! (again after a customer reopens it), as a ticket store's agents would. Outbox, journal and
//! closed-ticket retention are low enough to be reached early, so deskgate's state can level
//! off. Every 10 s it samples the daemon's resident memory (`VmRSS`) and the state directory's
//! size on disk.
//!
//! ```text
//! bench soak: minutes=<n> rss_start_mb=<n> rss_end_mb=<n> disk_start_mb=<n> disk_end_mb=<n> errors=<n>
//! ```
//!
//! The start figures are taken once the warm-up is over and retention has deleted events;
//! the run fails when resident memory ends more than 10% above its start, when the state
//! directory grows by more than 10% (it must stop growing once retention is reached), or when
//! any input was refused or never acknowledged or the agent got an answer other than 2xx (a
//! 404, a ticket deskgate already forgot, is counted apart). The state directory's size saws
//! up and down with the engine's flushes and compactions (by half its size within a minute), so
//! its figures are the median size in the first and in the second half of the time after the
//! warm-up, not two samples that may sit anywhere on that saw (nor its peaks: a compaction
//! briefly holds its input and output).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::mixed::Load;
use crate::rig::{deskgate_binary, Options, Rig};

/// What retention keeps, of the outbox and of the journal: low enough that the run reaches it
/// within its first minutes.
const RETENTION: &str =
    "[retention]\nmin_age_secs = 60\nmin_events = 10000\ncompact_interval_secs = 10\n\
                         [journal]\nretention_secs = 60\ncompact_interval_secs = 10\n";

/// The one pipeline, which every channel then uses: tickets open and get closed. A customer
/// writing on a closed ticket reopens it; no agent mail goes out, so `agent_emailed` is off.
const PIPELINE: &str = r#"
[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "open", label = "Open", open = true },
  { id = "closed", label = "Closed", open = false },
]

[routing.pipelines.support.triggers]
customer_replied = { target = "open" }
agent_emailed = { enabled = false }
"#;

/// The pipeline's one closed status, which the agent sets.
const CLOSED: &str = "closed";

/// Close requests the agent has in flight at most.
const MAX_CLOSING: usize = 16;

#[derive(clap::Args)]
pub struct Args {
    /// Minutes of load.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Inputs per second over all channels together.
    #[arg(long, default_value_t = 40.0)]
    rate: f64,
    /// Minutes before the start figures are taken (at least until retention has deleted
    /// events); by default a third of the run.
    #[arg(long)]
    warmup_minutes: Option<u64>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Size of the state directory's filesystem, in MiB.
    #[arg(long, default_value_t = 4096)]
    disk_mb: u64,
    /// The deskgate binary; by default the one beside this binary.
    #[arg(long)]
    deskgate: Option<std::path::PathBuf>,
    /// deskgate's page cache (`state.cache_capacity_bytes`), in MiB. Small enough by default
    /// that it fills during the warm-up: a cache growing to its capacity is not a leak. The
    /// old default of 128 MiB filled only long after a 30-minute run's warm-up; the current
    /// 64 MiB default was not tried here.
    #[arg(long, default_value_t = 32)]
    cache_mb: u64,
    /// Customers per lane: each lane's threads come from this many returning customers.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    customers: u64,
    /// Seconds a ticket stays idle (no event names it) before the agent closes it.
    #[arg(long, default_value_t = 15)]
    close_after_secs: u64,
    /// deskgate's `[routing] closed_retention_secs`: how long after its close a ticket's state
    /// is forgotten. 0 leaves the setting out of the config.
    #[arg(long, default_value_t = 60)]
    closed_retention_secs: u64,
}

impl Args {
    /// The TOML appended to the rig's config.
    fn extra(&self) -> String {
        let retention = match self.closed_retention_secs {
            0 => String::new(),
            secs => format!("closed_retention_secs = {secs}\n"),
        };
        format!("{RETENTION}\n[routing]\n{retention}{PIPELINE}")
    }
}

/// One sample: seconds into the run, resident MiB, state MiB.
struct Sample {
    at: Duration,
    rss_mb: f64,
    disk_mb: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let rig = Rig::start(Options {
        deskgate: deskgate_binary(args.deskgate.clone())?,
        disk_bytes: args.disk_mb << 20,
        extra: args.extra(),
        cache_bytes: Some(args.cache_mb << 20),
        power_cuts: false,
    })
    .await?;
    let load = Load::with_population(rig.base_url(), Some(args.customers));
    let lanes = load.spawn_lanes("s", args.rate, &rig.dovecot);
    let agent = Arc::new(Agent::new(&rig, Duration::from_secs(args.close_after_secs)));
    let agent_task = tokio::spawn(Arc::clone(&agent).run());
    let total = Duration::from_secs(args.minutes * 60);
    let warmup = Duration::from_secs(args.warmup_minutes.unwrap_or(args.minutes / 3) * 60);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(args.sample_secs));
    let (mut samples, mut start) = (Vec::new(), None);
    while started.elapsed() < total {
        ticker.tick().await;
        let sample = Sample {
            at: started.elapsed(),
            rss_mb: rss_mb(rig.daemon.pid())?,
            disk_mb: size_on_disk(&rig.state_dir) as f64 / 1048576.0,
        };
        let status = json(&rig, "/v1/status").await;
        if samples.len() % 6 == 0 {
            eprintln!(
                "  {:>5.0}s rss={:.1}MB disk={:.1}MB acked={} journal={} outbox_last={} {}",
                sample.at.as_secs_f64(),
                sample.rss_mb,
                sample.disk_mb,
                load.acked.load(Ordering::Relaxed),
                status["journal"]["durable_seq"],
                status["outbox"]["last_seq"],
                agent.summary()
            );
        }
        if start.is_none() && sample.at >= warmup && retention_reached(&rig).await {
            eprintln!("  warm-up over at {:.0?}; start figures taken", sample.at);
            start = Some(samples.len());
        }
        samples.push(sample);
    }
    load.stop(lanes, Duration::ZERO).await?;
    agent.stop.store(true, Ordering::Relaxed);
    agent_task.await?;
    let start_index = start.ok_or_else(|| {
        anyhow::anyhow!("outbox retention was never reached: lengthen the run or raise --rate")
    })?;
    let start = &samples[start_index];
    let end = samples.last().expect("at least the start sample");
    let (disk_start_mb, disk_end_mb) = disk_medians(&samples[start_index..]);
    let ledger = load.lock_ledger();
    let unacked = ledger.entries.values().filter(|e| !e.acked).count();
    let refused = load.errors.lock().expect("no panics").len();
    let input_errors = unacked + refused + load.unavailable.load(Ordering::Relaxed) as usize;
    let agent_errors = agent.errors.load(Ordering::Relaxed) as usize;
    let errors = input_errors + agent_errors;
    println!(
        "bench soak: minutes={} rss_start_mb={:.0} rss_end_mb={:.0} disk_start_mb={:.0} disk_end_mb={:.0} errors={errors}",
        args.minutes, start.rss_mb, end.rss_mb, disk_start_mb, disk_end_mb
    );
    eprintln!(
        "  inputs={} unacked={unacked} refused={refused} 503s={}",
        ledger.entries.len(),
        load.unavailable.load(Ordering::Relaxed)
    );
    eprintln!("  {}", agent.summary());
    for error in agent.first_errors.lock().expect("no panics").iter() {
        eprintln!("  agent: {error}");
    }
    let mut failures = Vec::new();
    if end.rss_mb > start.rss_mb * 1.10 {
        failures.push(format!(
            "resident memory grew from {:.1} MB to {:.1} MB (more than 10%)",
            start.rss_mb, end.rss_mb
        ));
    }
    if disk_end_mb > disk_start_mb * 1.10 {
        failures.push(format!(
            "the state directory grew from {disk_start_mb:.1} MB to {disk_end_mb:.1} MB (medians) after retention was reached",
        ));
    }
    if input_errors > 0 {
        failures.push(format!(
            "{input_errors} inputs were refused or never acknowledged"
        ));
    }
    if agent_errors > 0 {
        failures.push(format!("{agent_errors} of the agent's requests failed"));
    }
    anyhow::ensure!(failures.is_empty(), "soak failed: {}", failures.join("; "));
    Ok(())
}

/// The state directory's median size in the first and in the second half of `samples`.
fn disk_medians(samples: &[Sample]) -> (f64, f64) {
    let (first, second) = samples.split_at((samples.len() / 2).max(1).min(samples.len()));
    let median = |half: &[Sample]| {
        let mut sizes: Vec<f64> = half.iter().map(|s| s.disk_mb).collect();
        sizes.sort_by(f64::total_cmp);
        sizes.get(sizes.len() / 2).copied().unwrap_or(0.0)
    };
    (median(first), median(second))
}

/// What the agent knows of one ticket.
struct Tracked {
    /// When an event last named it.
    last: Instant,
    open: bool,
    /// A close request is in flight.
    closing: bool,
}

/// The answer to one close request, sent back to the agent's loop.
struct Closed {
    ticket: String,
    sent: Instant,
    status: Result<u16, String>,
}

/// The help desk's agent: follows deskgate's events and closes tickets left idle, through the
/// control API, as the ticket store would.
struct Agent {
    base: String,
    token: String,
    close_after: Duration,
    client: reqwest::Client,
    stop: AtomicBool,
    /// Tickets tracked as open and as closed, for the status line.
    open: AtomicU64,
    closed: AtomicU64,
    /// Close requests answered 2xx.
    closes: AtomicU64,
    /// Close requests answered 404: the ticket was forgotten (retention) or merged away.
    gone: AtomicU64,
    /// Other answers, and requests that got none.
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Agent {
    fn new(rig: &Rig, close_after: Duration) -> Agent {
        Agent {
            base: rig.base_url(),
            token: rig.control_token.clone(),
            close_after,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                // deskgate closes a connection idle for `server.header_read_timeout_secs`
                // (10 s); a pooled connection reused at that moment fails to send
                // (docs/http-api.md), so the agent lets idle connections go before that.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("a reqwest client builds"),
            stop: AtomicBool::new(false),
            open: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            gone: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_errors: Mutex::default(),
        }
    }

    fn summary(&self) -> String {
        format!(
            "agent: open={} closed={} closes={} gone_404={} errors={}",
            self.open.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
            self.closes.load(Ordering::Relaxed),
            self.gone.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed)
        )
    }

    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.first_errors.lock().expect("no panics");
        if errors.len() < 10 {
            errors.push(message);
        }
    }

    /// Reads pages of events until stopped; between pages, closes what has been idle long
    /// enough. Close requests run beside the loop so that a slow one does not hold up the
    /// events.
    async fn run(self: Arc<Agent>) {
        let mut tickets: HashMap<String, Tracked> = HashMap::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Closed>();
        let (mut after, mut closing) = (0u64, 0usize);
        while !self.stop.load(Ordering::Relaxed) {
            match self.page(after).await {
                Ok((events, next)) => {
                    for event in &events {
                        note(&mut tickets, event);
                    }
                    after = next.max(after);
                }
                Err(error) => {
                    self.error(format!("GET /v1/events: {error}"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            while let Ok(done) = done_rx.try_recv() {
                closing -= 1;
                self.closed_answer(&mut tickets, done);
            }
            for (id, ticket) in &mut tickets {
                if closing >= MAX_CLOSING {
                    break;
                }
                if ticket.open && !ticket.closing && ticket.last.elapsed() >= self.close_after {
                    ticket.closing = true;
                    closing += 1;
                    let (agent, id, done) = (Arc::clone(&self), id.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let sent = Instant::now();
                        let status = agent.close(&id).await;
                        let _ = done.send(Closed {
                            ticket: id,
                            sent,
                            status,
                        });
                    });
                }
            }
            let open = tickets.values().filter(|t| t.open).count();
            self.open.store(open as u64, Ordering::Relaxed);
            self.closed
                .store((tickets.len() - open) as u64, Ordering::Relaxed);
        }
        // Let the requests in flight answer, so that none is left uncounted.
        drop(done_tx);
        while let Some(done) = done_rx.recv().await {
            self.closed_answer(&mut tickets, done);
        }
    }

    /// One page of events after `after`, and where the next starts.
    async fn page(&self, after: u64) -> Result<(Vec<Value>, u64), String> {
        let url = format!("{}/v1/events?after={after}&limit=500&wait=5", self.base);
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| with_causes(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        let mut page: Value = response.json().await.map_err(|e| with_causes(&e))?;
        let next = page["next"].as_u64().ok_or("a page without next")?;
        match page["events"].take() {
            Value::Array(events) => Ok((events, next)),
            _ => Err("a page without events".to_owned()),
        }
    }

    async fn close(&self, ticket: &str) -> Result<u16, String> {
        let url = format!("{}/v1/control/tickets/{ticket}/status", self.base);
        let response = self
            .client
            .put(url)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "status": CLOSED }))
            .send()
            .await
            .map_err(|e| with_causes(&e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) || status == 404 {
            return Ok(status);
        }
        let body = response.text().await.unwrap_or_default();
        Err(format!("answered {status}: {body}"))
    }

    fn closed_answer(&self, tickets: &mut HashMap<String, Tracked>, done: Closed) {
        match done.status {
            Ok(404) => {
                self.gone.fetch_add(1, Ordering::Relaxed);
                tickets.remove(&done.ticket);
            }
            Ok(_) => {
                self.closes.fetch_add(1, Ordering::Relaxed);
                if let Some(ticket) = tickets.get_mut(&done.ticket) {
                    ticket.closing = false;
                    // Events after the request was sent (a reopening) already say more.
                    if ticket.last <= done.sent {
                        ticket.open = false;
                    }
                }
            }
            Err(error) => {
                self.error(format!("closing ticket {}: {error}", done.ticket));
                if let Some(ticket) = tickets.get_mut(&done.ticket) {
                    ticket.closing = false;
                    ticket.last = Instant::now();
                }
            }
        }
    }
}

/// Takes in one event: every ticket event's subject is the ticket; those that carry a status
/// say whether it is open.
fn note(tickets: &mut HashMap<String, Tracked>, event: &Value) {
    let kind = event["type"].as_str().unwrap_or_default();
    let Some(id) = event["subject"].as_str() else {
        return;
    };
    if !(kind.starts_with("deskgate.ticket.") || kind == "deskgate.conversation.closed") {
        return;
    }
    let data = &event["data"];
    match kind {
        "deskgate.ticket.deleted" => {
            tickets.remove(id);
            return;
        }
        "deskgate.ticket.merged" => {
            if let Some(merged) = data["merged"].as_str() {
                tickets.remove(merged);
            }
        }
        _ => {}
    }
    let status = match kind {
        "deskgate.ticket.created" | "deskgate.ticket.message_added" => {
            data["ticket"]["status"].as_str()
        }
        "deskgate.ticket.status_changed" | "deskgate.ticket.status_trigger" => {
            data["new_status"].as_str()
        }
        _ => None,
    };
    let ticket = tickets.entry(id.to_owned()).or_insert(Tracked {
        last: Instant::now(),
        open: true,
        closing: false,
    });
    ticket.last = Instant::now();
    if let Some(status) = status {
        ticket.open = status != CLOSED;
    }
}

/// Whether compaction has deleted events: the oldest kept event is no longer the first.
async fn retention_reached(rig: &Rig) -> bool {
    let page = json(rig, "/v1/events?after=0&limit=1").await;
    page["events"][0]["sequence"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|first| first > 1)
}

async fn json(rig: &Rig, path: &str) -> Value {
    match reqwest::get(rig.daemon.url(path)).await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// A process's resident set, in MiB, from `/proc/<pid>/status`.
fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// Bytes the files under `dir` occupy (allocated blocks, as `du` counts them).
fn size_on_disk(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => size_on_disk(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// An error with the errors that caused it: reqwest's own text ("error sending request")
/// does not say why.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
