//! Bench mode `soak`: the mixed load of `chaos` (every kind of channel, acknowledgements by
//! SMTP, the NATS sink) at a steady rate for a long time on one deskgate, without faults, with
//! outbox retention low enough to be reached early. Every 10 s it samples the daemon's
//! resident memory (`VmRSS`) and the state directory's size on disk.
//!
//! ```text
//! bench soak: minutes=<n> rss_start_mb=<n> rss_end_mb=<n> disk_start_mb=<n> disk_end_mb=<n> errors=<n>
//! ```
//!
//! The start figures are taken once the warm-up is over and retention has deleted events;
//! the run fails when resident memory ends more than 10% above its start, when the state
//! directory ends more than 10% above its start (it must stop growing once retention is
//! reached), or when any input was refused or never acknowledged.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::chaos::deskgate_binary;
use crate::mixed::Load;
use crate::rig::{Options, Rig};

/// What retention keeps, of the outbox and of the journal: low enough that the run reaches it
/// within its first minutes.
const RETENTION: &str =
    "[retention]\nmin_age_secs = 60\nmin_events = 10000\ncompact_interval_secs = 10\n\
                         [journal]\nretention_secs = 60\ncompact_interval_secs = 10\n";

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
        extra: RETENTION.to_owned(),
    })
    .await?;
    let load = Load::new(rig.base_url());
    let lanes = load.spawn_lanes("s", args.rate, &rig.dovecot);
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
                "  {:>5.0}s rss={:.1}MB disk={:.1}MB acked={} journal={} outbox_last={}",
                sample.at.as_secs_f64(),
                sample.rss_mb,
                sample.disk_mb,
                load.acked.load(Ordering::Relaxed),
                status["journal"]["durable_seq"],
                status["outbox"]["last_seq"]
            );
        }
        if start.is_none() && sample.at >= warmup && retention_reached(&rig).await {
            eprintln!("  warm-up over at {:.0?}; start figures taken", sample.at);
            start = Some(samples.len());
        }
        samples.push(sample);
    }
    load.stop(lanes, Duration::ZERO).await?;
    let start = &samples[start.ok_or_else(|| {
        anyhow::anyhow!("outbox retention was never reached: lengthen the run or raise --rate")
    })?];
    let end = samples.last().expect("at least the start sample");
    let ledger = load.lock_ledger();
    let unacked = ledger.entries.values().filter(|e| !e.acked).count();
    let refused = load.errors.lock().expect("no panics").len();
    let errors = unacked + refused + load.unavailable.load(Ordering::Relaxed) as usize;
    println!(
        "bench soak: minutes={} rss_start_mb={:.0} rss_end_mb={:.0} disk_start_mb={:.0} disk_end_mb={:.0} errors={errors}",
        args.minutes, start.rss_mb, end.rss_mb, start.disk_mb, end.disk_mb
    );
    eprintln!(
        "  inputs={} unacked={unacked} refused={refused} 503s={}",
        ledger.entries.len(),
        load.unavailable.load(Ordering::Relaxed)
    );
    let mut failures = Vec::new();
    if end.rss_mb > start.rss_mb * 1.10 {
        failures.push(format!(
            "resident memory grew from {:.1} MB to {:.1} MB (more than 10%)",
            start.rss_mb, end.rss_mb
        ));
    }
    if end.disk_mb > start.disk_mb * 1.10 {
        failures.push(format!(
            "the state directory grew from {:.1} MB to {:.1} MB after retention was reached",
            start.disk_mb, end.disk_mb
        ));
    }
    if errors > 0 {
        failures.push(format!(
            "{errors} inputs were refused or never acknowledged"
        ));
    }
    anyhow::ensure!(failures.is_empty(), "soak failed: {}", failures.join("; "));
    Ok(())
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
