//! The faults and when they strike: a schedule drawn from the seed, run one step at a time
//! against the rig while the load goes on.
//!
//! - `kill -9` of deskgate, restarted after a random pause;
//! - a power cut: deskgate and the lazy filesystem under its state killed, the filesystem
//!   remounted on what was fsynced, deskgate restarted on it (see `crates/test-kit/src/lazyfs.rs`);
//! - Dovecot restarted (every IMAP connection drops);
//! - a burst of mail, and `doveadm kick` of deskgate's connection while it fetches the burst;
//! - NATS stopped (SIGKILL) for a while and started again on the same storage;
//! - the SMTP server stopped for a while and started again;
//! - the state directory's tmpfs shrunk to what it holds (a full disk) for a while: deskgate
//!   must answer 503, report `storage_failed`, and restart itself in place once it grows back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;

use crate::dovecot::USER;
use crate::mixed::Load;
use crate::rig::Rig;

/// How many of each fault, and for how long.
pub struct Plan {
    pub kills: usize,
    pub power_cuts: usize,
    /// Each fault other than kills happens this many times.
    pub rounds: usize,
    pub nats_outage: Duration,
    pub smtp_outage: Duration,
    pub disk_full: Duration,
    /// Mails in the burst that deskgate is fetching when its connection is cut.
    pub burst: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    PowerCut,
    DovecotRestart,
    KickMidFetch,
    NatsStop,
    NatsStart,
    SmtpStop,
    SmtpStart,
    DiskFill,
    DiskFree,
}

#[derive(Debug)]
pub struct Step {
    at: Duration,
    action: Action,
}

/// What the faults did, for the report.
#[derive(Default)]
pub struct Done {
    pub kills: usize,
    pub power_cuts: usize,
    pub dovecot_restarts: usize,
    pub kicks: usize,
    /// Kicks that cut deskgate off while it had journaled part of the burst, not all of it.
    pub kicks_mid_fetch: usize,
    pub nats_outages: usize,
    pub smtp_outages: usize,
    pub disk_fulls: usize,
    /// 503 answers while the disk was full.
    pub disk_full_503s: u64,
    /// Faults that did not behave as they must (no 503 on a full disk, a new process id).
    pub problems: Vec<String>,
}

/// Every fault placed in the load's first 85%: the other faults in slots of their own (in a
/// random order per round), kills and power cuts anywhere except while the disk is full.
pub fn schedule(plan: &Plan, load: Duration, rng: &mut StdRng) -> Vec<Step> {
    let (from, to) = (load.as_secs_f64() * 0.08, load.as_secs_f64() * 0.85);
    let mut faults = Vec::new();
    for _ in 0..plan.rounds {
        let mut round = [
            Action::DovecotRestart,
            Action::KickMidFetch,
            Action::NatsStop,
            Action::SmtpStop,
            Action::DiskFill,
        ];
        round.shuffle(rng);
        faults.extend(round);
    }
    let slot = (to - from) / faults.len().max(1) as f64;
    let mut steps = Vec::new();
    let mut disk_full_windows = Vec::new();
    let mut push = |at: f64, action| {
        steps.push(Step {
            at: Duration::from_secs_f64(at),
            action,
        })
    };
    for (i, fault) in faults.iter().enumerate() {
        let start = from + slot * i as f64 + rng.gen_range(0.0..slot * 0.1);
        let room = slot * 0.85;
        let outage = |wanted: Duration| wanted.as_secs_f64().min(room);
        match fault {
            Action::NatsStop => {
                push(start, Action::NatsStop);
                push(start + outage(plan.nats_outage), Action::NatsStart);
            }
            Action::SmtpStop => {
                push(start, Action::SmtpStop);
                push(start + outage(plan.smtp_outage), Action::SmtpStart);
            }
            Action::DiskFill => {
                let end = start + outage(plan.disk_full).min(room / 2.0);
                push(start, Action::DiskFill);
                push(end, Action::DiskFree);
                disk_full_windows.push((start - 0.5, end + 0.5));
            }
            other => push(start, *other),
        }
    }
    for (action, count) in [
        (Action::Kill, plan.kills),
        (Action::PowerCut, plan.power_cuts),
    ] {
        let mut placed = 0;
        while placed < count {
            let at = rng.gen_range(from..to);
            if disk_full_windows.iter().all(|&(a, b)| at < a || at > b) {
                push(at, action);
                placed += 1;
            }
        }
    }
    steps.sort_by_key(|step| step.at);
    steps
}

/// Runs the steps in order, each at its time from `started` (later when the one before took
/// longer), and leaves every peer running.
pub async fn run(
    steps: Vec<Step>,
    plan: &Plan,
    rig: &mut Rig,
    load: &Arc<Load>,
    rng: &mut StdRng,
    started: Instant,
) -> anyhow::Result<Done> {
    let mut done = Done::default();
    let mut disk_full = None;
    for step in steps {
        tokio::time::sleep_until((started + step.at).into()).await;
        eprintln!(
            "  {:>6.1}s {:?}",
            started.elapsed().as_secs_f64(),
            step.action
        );
        match step.action {
            Action::Kill => {
                rig.daemon.kill();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
                rig.daemon.restart().await;
                done.kills += 1;
            }
            Action::PowerCut => {
                power_cut(rig).await?;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
                rig.daemon.restart().await;
                done.power_cuts += 1;
            }
            Action::DovecotRestart => {
                let mut dovecot = rig.dovecot.write().await;
                tokio::task::block_in_place(|| dovecot.restart());
                done.dovecot_restarts += 1;
            }
            Action::KickMidFetch => {
                // The cut lands mid-fetch only when the timing allows: up to three bursts.
                for attempt in 0..3 {
                    let name = format!("burst{}-{attempt}", done.kicks);
                    let mid_fetch = kick_mid_fetch(rig, load, &name, plan.burst).await?;
                    done.kicks += 1;
                    if mid_fetch {
                        done.kicks_mid_fetch += 1;
                        break;
                    }
                }
            }
            Action::NatsStop => tokio::task::block_in_place(|| rig.nats.stop()),
            Action::NatsStart => {
                tokio::task::block_in_place(|| rig.nats.restart());
                done.nats_outages += 1;
            }
            Action::SmtpStop => tokio::task::block_in_place(|| rig.smtpd.stop()),
            Action::SmtpStart => {
                tokio::task::block_in_place(|| rig.smtpd.restart());
                done.smtp_outages += 1;
            }
            Action::DiskFill => {
                disk_full = Some((rig.daemon.pid(), load.unavailable.load(Ordering::Relaxed)));
                fill_disk(rig).await?;
            }
            Action::DiskFree => {
                let (pid, unavailable_before) = disk_full.take().context("a full disk to free")?;
                free_disk(rig).await?;
                let answered_503 = load.unavailable.load(Ordering::Relaxed) - unavailable_before;
                done.disk_full_503s += answered_503;
                if answered_503 == 0 {
                    done.problems
                        .push("the disk was full but no input was answered 503".to_owned());
                }
                if rig.daemon.pid() != pid {
                    done.problems
                        .push("deskgate did not recover from the full disk in place".to_owned());
                }
                done.disk_fulls += 1;
            }
        }
    }
    Ok(done)
}

/// Cuts the power under deskgate: kills it and the lazy filesystem, and remounts that on what
/// was fsynced; deskgate is left stopped.
async fn power_cut(rig: &mut Rig) -> anyhow::Result<()> {
    rig.daemon.kill();
    let lazy = rig
        .lazy
        .as_mut()
        .context("power cuts need the rig's lazy filesystem")?;
    tokio::task::block_in_place(|| {
        lazy.cut()?;
        lazy.remount()
    })
    .map_err(|error| anyhow::anyhow!("the power cut: {error}"))
}

/// Delivers a burst of mail at once and, as soon as deskgate is in the middle of a sync of
/// several batches (it logs `synced <done>/<total>` after each), cuts its IMAP connection with
/// `doveadm kick`. Returns whether the cut interrupted a fetch, as deskgate's `/readyz`
/// reports the error it got.
async fn kick_mid_fetch(
    rig: &Rig,
    load: &Arc<Load>,
    name: &str,
    burst: u64,
) -> anyhow::Result<bool> {
    let log = rig.daemon.dir.join("deskgate.log");
    let mut offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let error_before = mailbox_status(rig).await["last_error_at"].clone();
    // deskgate starts fetching while the burst still arrives: watch it meanwhile.
    let delivering = {
        let (load, dovecot, name) = (Arc::clone(load), Arc::clone(&rig.dovecot), name.to_owned());
        tokio::spawn(async move { load.mail_burst(&dovecot, &name, burst).await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (text, next) = read_from(&log, offset);
        offset = next;
        if text.lines().any(mid_sync) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let kicked = {
        let dovecot = rig.dovecot.read().await;
        tokio::task::block_in_place(|| dovecot.try_doveadm(&["kick", USER]))
    };
    delivering.await?;
    // What deskgate was doing when its connection went: the error it reports.
    let mut error = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while kicked.is_ok() && Instant::now() < deadline {
        let status = mailbox_status(rig).await;
        if status["last_error_at"] != error_before && !status["last_error_at"].is_null() {
            error = status["last_error"].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mid_fetch = error.contains("FETCH");
    let report = match &kicked {
        Ok(_) => format!("deskgate reported {error:?}"),
        Err(refusal) => format!(
            "nothing to cut ({}); deskgate's mailbox: {}",
            refusal.trim(),
            mailbox_status(rig).await
        ),
    };
    eprintln!("    kick: {report}");
    Ok(mid_fetch)
}

/// Whether a log line is deskgate's `synced <done>/<total>` with batches still to fetch (not
/// the line that ends a sync).
fn mid_sync(line: &str) -> bool {
    let Some((_, rest)) = line.split_once("synced ") else {
        return false;
    };
    let figures: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '/')
        .collect();
    let Some((done, total)) = figures.split_once('/') else {
        return false;
    };
    match (done.parse::<u64>(), total.parse::<u64>()) {
        (Ok(done), Ok(total)) => done < total,
        _ => false,
    }
}

/// The log's text after `offset`, and the offset after it.
fn read_from(path: &std::path::Path, offset: u64) -> (String, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    let Ok(mut file) = std::fs::File::open(path) else {
        return (text, offset);
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return (text, offset);
    }
    let read = file.read_to_string(&mut text).unwrap_or(0);
    (text, offset + read as u64)
}

/// The mail channel's mailbox status from `/readyz`.
async fn mailbox_status(rig: &Rig) -> Value {
    readyz(rig)
        .await
        .map(|r| r["mailboxes"]["mail"].clone())
        .unwrap_or(Value::Null)
}

async fn readyz(rig: &Rig) -> Option<Value> {
    let response = reqwest::get(rig.daemon.url("/readyz")).await.ok()?;
    response.json().await.ok()
}

/// Shrinks the tmpfs to what it holds plus a little, then waits for deskgate to notice.
async fn fill_disk(rig: &Rig) -> anyhow::Result<()> {
    let mut resized = Err(String::new());
    for _ in 0..10 {
        resized = rig.disk.resize(rig.disk.used_bytes() + 256 * 1024);
        if resized.is_ok() {
            break;
        }
    }
    resized.map_err(|error| anyhow::anyhow!("filling the disk: {error}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if readyz(rig)
            .await
            .is_some_and(|r| r["status"] == "storage_failed")
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "deskgate did not report storage_failed within 60 s of a full disk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gives the space back and waits until deskgate has reopened its state and serves again.
async fn free_disk(rig: &Rig) -> anyhow::Result<()> {
    rig.disk
        .resize(rig.disk_bytes)
        .map_err(|error| anyhow::anyhow!("freeing the disk: {error}"))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = readyz(rig).await.map(|r| r["status"].clone());
        if status.is_some_and(|s| s == "ready" || s == "degraded") {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "deskgate did not recover within 90 s of the disk having room again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
