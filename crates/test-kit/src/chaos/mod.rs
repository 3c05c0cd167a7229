//! The chaos run (bench mode `chaos`): the reliability proof. One real deskgate (the binary, as a child
//! process) takes mixed load on every kind of channel (see [`crate::rig`]) while faults strike
//! at random moments (`faults.rs`); at the end the harness checks from the outside
//! (`check.rs`) that every acknowledged input produced exactly one message event and the right
//! ticket event, that nothing was invented, that the outbox has no sequence gap, and that the
//! JetStream stream holds every event exactly once. It prints
//!
//! ```text
//! chaos: inputs=<n> acked=<n> lost=0 duplicated=0 invented=0 kills=<n> power_cuts=<n>
//! ```
//!
//! and fails otherwise. The defaults are the long mode of `deskgate-bench chaos`; the end-to-end
//! test `tests/chaos.rs` runs the same harness with small parameters.

mod check;
mod faults;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use crate::mixed::Load;
use crate::rig::{deskgate_binary, Options, Rig, ACKNOWLEDGED, STREAM};

/// The run's parameters: the bench's `chaos` arguments, which a test parses from the same flags.
#[derive(clap::Parser)]
#[command(name = "chaos")]
pub struct Args {
    /// Seconds of load; the faults strike in its first 85%.
    #[arg(long, default_value_t = 900)]
    secs: u64,
    /// Inputs per second over all channels together.
    #[arg(long, default_value_t = 80.0)]
    rate: f64,
    /// kill -9 of deskgate, each followed by a restart.
    #[arg(long, default_value_t = 24)]
    kills: usize,
    /// Power cuts: deskgate and the lazy filesystem under its state killed with SIGKILL, the
    /// filesystem remounted on what was fsynced, deskgate restarted on it. With 0, the state
    /// directory is on the tmpfs directly.
    #[arg(long, default_value_t = 6)]
    power_cuts: usize,
    /// Rounds of the other faults (Dovecot restart, kick mid-fetch, NATS, SMTP, full disk),
    /// each once per round.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[arg(long, default_value_t = 60)]
    nats_outage_secs: u64,
    #[arg(long, default_value_t = 30)]
    smtp_outage_secs: u64,
    #[arg(long, default_value_t = 10)]
    disk_full_secs: u64,
    /// Mails in the burst deskgate is fetching when its IMAP connection is cut.
    #[arg(long, default_value_t = 300)]
    burst: u64,
    /// Size of the state directory's filesystem, in MiB.
    #[arg(long, default_value_t = 4096)]
    disk_mb: u64,
    /// Seed of the fault schedule; random when left out, printed either way.
    #[arg(long)]
    seed: Option<u64>,
    /// The deskgate binary; by default the one beside this binary.
    #[arg(long)]
    deskgate: Option<PathBuf>,
}

impl Args {
    fn plan(&self) -> faults::Plan {
        faults::Plan {
            kills: self.kills,
            power_cuts: self.power_cuts,
            rounds: self.rounds,
            nats_outage: Duration::from_secs(self.nats_outage_secs),
            smtp_outage: Duration::from_secs(self.smtp_outage_secs),
            disk_full: Duration::from_secs(self.disk_full_secs),
            burst: self.burst,
        }
    }
}

/// Runs the load under faults, prints the chaos line and returns it; fails on any problem.
pub async fn run(args: Args) -> anyhow::Result<String> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!("chaos: seed={seed} (rerun with --seed {seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rig = Rig::start(Options {
        deskgate: deskgate_binary(args.deskgate.clone())?,
        disk_bytes: args.disk_mb << 20,
        extra: String::new(),
        cache_bytes: None,
        power_cuts: args.power_cuts > 0,
    })
    .await?;
    let load = Load::new(rig.base_url());
    let started = Instant::now();
    let lanes = load.spawn_lanes("c", args.rate, &rig.dovecot);
    let reading = Arc::new(AtomicBool::new(true));
    let live = tokio::spawn(follow_outbox(rig.base_url(), Arc::clone(&reading)));
    let plan = args.plan();
    let load_time = Duration::from_secs(args.secs);
    let steps = faults::schedule(&plan, load_time, &mut rng);
    let done = match faults::run(steps, &plan, &mut rig, &load, &mut rng, started).await {
        Ok(done) => done,
        Err(error) => return Err(explained(&rig, error.context(format!("seed {seed}"))).await),
    };
    tokio::time::sleep_until((started + load_time).into()).await;
    // What is in flight when the load stops retries for two more minutes at most.
    load.stop(lanes, Duration::from_secs(120)).await?;
    eprintln!(
        "  load stopped after {:.0?}; reading everything back",
        started.elapsed()
    );
    let events = settle(&rig)
        .await
        .map_err(|error| anyhow::anyhow!("{error:#} (seed {seed})"));
    let events = match events {
        Ok(events) => events,
        Err(error) => return Err(explained(&rig, error).await),
    };
    reading.store(false, Ordering::Relaxed);
    let (live, live_problems) = live.await?;
    let stream = rig.nats.read_stream(STREAM).await;
    let mails = rig.smtpd.messages();
    let ledger = load.lock_ledger();
    let mut verdict = check::verdict(&check::Evidence {
        ledger: &ledger,
        events: &events,
        stream: &stream,
        live: &live,
        mails: &mails,
    });
    verdict.problems.extend(live_problems);
    verdict.problems.extend(done.problems.iter().cloned());
    verdict
        .problems
        .extend(load.errors.lock().expect("no panics").iter().cloned());
    let exit = rig.daemon.terminate();
    if !exit.success() {
        verdict
            .problems
            .push(format!("deskgate exited with {exit} on SIGTERM"));
    }
    report(&verdict, &done, seed)
}

/// `error`, with what deskgate's `/readyz` and the end of its log say.
async fn explained(rig: &Rig, error: anyhow::Error) -> anyhow::Error {
    let log = rig.daemon.log();
    let mut tail: Vec<&str> = log.lines().rev().take(40).collect();
    tail.reverse();
    anyhow::anyhow!(
        "{error:#}\n/readyz: {}\nlast lines of deskgate's log:\n{}",
        status(rig, "/readyz").await,
        tail.join("\n")
    )
}

/// Prints what the faults did, the notes and the chaos line; returns the line unless something
/// went wrong.
fn report(verdict: &check::Verdict, done: &faults::Done, seed: u64) -> anyhow::Result<String> {
    eprintln!(
        "  faults: kills={} power_cuts={} dovecot_restarts={} kicks={} (mid-fetch {}) nats_outages={} smtp_outages={} disk_fulls={} (503s {})",
        done.kills, done.power_cuts, done.dovecot_restarts, done.kicks, done.kicks_mid_fetch, done.nats_outages,
        done.smtp_outages, done.disk_fulls, done.disk_full_503s
    );
    eprintln!("  {}", verdict.notes.join(" "));
    let line = format!(
        "chaos: inputs={} acked={} lost={} duplicated={} invented={} kills={} power_cuts={}",
        verdict.inputs,
        verdict.acked,
        verdict.lost,
        verdict.duplicated,
        verdict.invented,
        done.kills,
        done.power_cuts
    );
    println!("{line}");
    let clean =
        verdict.lost + verdict.duplicated + verdict.invented == 0 && verdict.problems.is_empty();
    anyhow::ensure!(
        clean,
        "chaos found problems (seed {seed}):\n  {}",
        verdict.problems.join("\n  ")
    );
    Ok(line)
}

/// Waits until everything sent has gone all the way: the mailbox is journaled, the processor
/// has applied the journal, every acknowledgement has its outcome and the sink has delivered
/// the whole outbox. Returns the whole outbox.
async fn settle(rig: &Rig) -> anyhow::Result<Vec<Value>> {
    let newest = {
        let dovecot = rig.dovecot.read().await;
        tokio::task::block_in_place(|| dovecot.uid_next("INBOX")) - 1
    };
    wait_for(&format!("mail up to UID {newest} journaled"), || async {
        status(rig, "/readyz").await["mailboxes"]["mail"]["last_uid"].as_u64()
            >= Some(u64::from(newest))
    })
    .await?;
    rig.daemon.settled().await;
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        rig.daemon.events_after(&mut events).await;
        let (tickets, outcomes) = acknowledgement_counts(&events);
        if outcomes >= tickets {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{outcomes} acknowledgement outcomes for {tickets} tickets after 180 s; without one:\n  {}",
            unanswered(&events).join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rig.daemon.settled().await;
    rig.daemon.events_after(&mut events).await;
    let last = events.len() as u64;
    wait_for(
        &format!("the NATS sink to deliver event {last}"),
        || async {
            status(rig, "/v1/status").await["sinks"]["js"]["cursor"].as_u64() >= Some(last)
        },
    )
    .await?;
    Ok(events)
}

/// New tickets on acknowledged channels, and acknowledgement outcomes, in `events`.
fn acknowledgement_counts(events: &[Value]) -> (usize, usize) {
    let tickets = events
        .iter()
        .filter(|e| e["type"] == "deskgate.ticket.created")
        .filter(|e| {
            ACKNOWLEDGED.contains(&e["data"]["message"]["channel"].as_str().unwrap_or_default())
        })
        .count();
    let outcomes = events
        .iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("deskgate.outbound."))
        })
        .count();
    (tickets, outcomes)
}

/// The `ticket.created` events (abridged) of acknowledged tickets that have no outcome yet.
fn unanswered(events: &[Value]) -> Vec<String> {
    let answered: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("deskgate.outbound."))
        })
        .filter_map(|e| e["data"]["ticket_id"].as_str())
        .collect();
    events
        .iter()
        .filter(|e| e["type"] == "deskgate.ticket.created")
        .filter(|e| {
            ACKNOWLEDGED.contains(&e["data"]["message"]["channel"].as_str().unwrap_or_default())
        })
        .filter(|e| !answered.contains(e["subject"].as_str().unwrap_or_default()))
        .map(|e| {
            let mut data = e["data"].clone();
            if let Some(message) = data["message"].as_object_mut() {
                message.remove("body");
                message.remove("raw");
            }
            format!("{} seq {} {}", e["subject"], e["sequence"], data)
        })
        .collect()
}

async fn status(rig: &Rig, path: &str) -> Value {
    match reqwest::get(rig.daemon.url(path)).await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Polls `condition` for up to three minutes.
async fn wait_for<F, Fut>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    while !condition().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Follows the outbox with long polls while the faults strike: event ids by sequence, and a
/// problem for any sequence the reader saw skipped.
async fn follow_outbox(
    base: String,
    reading: Arc<AtomicBool>,
) -> (BTreeMap<u64, String>, Vec<String>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client builds");
    let (mut seen, mut problems) = (BTreeMap::new(), Vec::new());
    let mut after = 0u64;
    while reading.load(Ordering::Relaxed) {
        let url = format!("{base}/v1/events?after={after}&limit=1000&wait=1");
        let page = match client.get(url).send().await {
            Ok(response) => response.json::<Value>().await.ok(),
            Err(_) => None,
        };
        let Some(page) = page else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        for event in page["events"].as_array().into_iter().flatten() {
            let seq: u64 = event["sequence"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if seq != after + 1 && problems.len() < 10 {
                problems.push(format!(
                    "the live reader got event {seq} right after {after}"
                ));
            }
            after = seq;
            seen.insert(seq, event["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    (seen, problems)
}
