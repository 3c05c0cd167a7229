//! Power cuts under load: the state directory lives on a filesystem that loses every write not
//! made durable by fsync/fdatasync when the test cuts the power (`crates/test-kit/src/lazyfs.rs`).
//! Concurrent clients post API messages; in the middle of each round the daemon and the
//! filesystem are killed with SIGKILL, the filesystem is remounted on what survived and the
//! daemon restarted on it. After each round, every message that was answered 2xx must be in the
//! outbox exactly once, no event may name a message that was never posted, and the daemon must
//! have started on its state (refusing to start fails the test; so does starting empty, since
//! the acknowledged messages are then missing). Needs root, `/dev/fuse`, `python3-fusepy`, and
//! for the second test loop devices, as CI and the development machines have.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use test_kit::lazyfs::{Ext4Image, LazyFs};
use test_kit::{api_message, Daemon};

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 120;
const CUTS: usize = 4;

/// What the clients sent and what was acknowledged, by round.
#[derive(Default)]
struct Ledger {
    attempted: HashSet<String>,
    /// External id -> the round in which it was answered 2xx.
    acked: HashMap<String, usize>,
}

/// The disk under the state directory, and how to cut its power.
enum Disk {
    /// The state directory is the lazy filesystem itself (per-file durability).
    Files(LazyFs),
    /// The state directory is ext4 on a loop device over an image on the lazy filesystem.
    /// `ext4` comes first so that it is detached before the filesystem under it goes.
    Ext4 {
        ext4: Ext4Image,
        lazy: LazyFs,
        backing_image: PathBuf,
    },
}

impl Disk {
    fn files(dir: &Path) -> Disk {
        let lazy = LazyFs::mount(
            &dir.join("lazyfs"),
            &dir.join("backing"),
            &dir.join("state"),
        )
        .expect("the lazy filesystem mounts");
        Disk::Files(lazy)
    }

    fn ext4(dir: &Path) -> Disk {
        let lazy = LazyFs::mount(&dir.join("lazyfs"), &dir.join("backing"), &dir.join("lazy"))
            .expect("the lazy filesystem mounts");
        let backing_image = dir.join("backing/state.img");
        let ext4 = Ext4Image::create(
            &backing_image,
            &dir.join("lazy/state.img"),
            &dir.join("state"),
            256,
        )
        .expect("ext4 on a loop device over the lazy filesystem");
        Disk::Ext4 {
            ext4,
            lazy,
            backing_image,
        }
    }

    /// The cut, once the daemon is dead: only what was fsynced survives; then the disk is
    /// brought back (for ext4, after `e2fsck -fp`, whose report is returned).
    fn cut_and_recover(&mut self) -> String {
        match self {
            Disk::Files(lazy) => {
                lazy.cut().expect("the lazy filesystem unmounts");
                lazy.remount().expect("the lazy filesystem remounts");
                String::new()
            }
            Disk::Ext4 {
                ext4,
                lazy,
                backing_image,
            } => {
                lazy.kill();
                ext4.detach()
                    .expect("ext4 unmounts and its loop device detaches");
                lazy.cut().expect("the lazy filesystem unmounts");
                let report = Ext4Image::check(backing_image).expect("e2fsck repairs the image");
                lazy.remount().expect("the lazy filesystem remounts");
                ext4.attach().expect("ext4 mounts again");
                report
            }
        }
    }
}

/// What one cut cost, measured after its round.
struct CutReport {
    acked_before_cut: usize,
    lost_this_round: usize,
    lost_total: usize,
    /// Messages acknowledged before the kill, in every round so far, and how many are there.
    acked_ever: usize,
    kept_ever: usize,
    duplicated: usize,
    invented: usize,
    settled: bool,
    fsck: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_lose_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::files(dir.path());
    run_cuts("files", dir.path(), disk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_under_ext4_lose_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::ext4(dir.path());
    run_cuts("ext4", dir.path(), disk).await;
}

async fn run_cuts(name: &str, dir: &Path, mut disk: Disk) {
    let mut daemon = Daemon::start(dir, "[journal]\nmax_batch = 256\n").await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut reports = Vec::new();
    let mut rng = rand::thread_rng();
    for round in 0..CUTS {
        let acked_now = Arc::new(AtomicUsize::new(0));
        let clients = post_round(&daemon, round, &ledger, &acked_now);
        // Cut somewhere in the middle of the round's load.
        let at = CLIENTS * PER_CLIENT * rng.gen_range(30..70) / 100;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked_now.load(Ordering::Relaxed) < at {
            assert!(Instant::now() < deadline, "round {round}: no progress");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
        // What a ticket store had read when the power went: it must find the same events
        // under the same sequence numbers afterwards (it will not read them again).
        let seen = daemon.all_events().await;
        daemon.kill();
        let acked_before_cut = acked_now.load(Ordering::Relaxed);
        let before: HashSet<String> = ledger.lock().unwrap().acked.keys().cloned().collect();
        let fsck = disk.cut_and_recover();
        daemon.restart().await;
        for client in clients {
            client.await.unwrap();
        }
        let settled = settle(&daemon).await;
        let events = daemon.all_events().await;
        assert_read_events_kept(round, &seen, &events);
        let report = measure(&ledger.lock().unwrap(), round, &events, &before);
        let report = CutReport {
            acked_before_cut,
            ..report
        };
        reports.push(CutReport {
            settled,
            fsck,
            ..report
        });
    }

    for (cut, r) in reports.iter().enumerate() {
        println!(
            "power_loss[{name}]: cut={} acked_before_cut={} lost_this_round={} lost_total={} \
             acked_ever={} kept_ever={} duplicated={} invented={} settled={}",
            cut + 1,
            r.acked_before_cut,
            r.lost_this_round,
            r.lost_total,
            r.acked_ever,
            r.kept_ever,
            r.duplicated,
            r.invented,
            r.settled
        );
        if !r.fsck.trim().is_empty() {
            println!(
                "power_loss[{name}]: cut={} e2fsck: {}",
                cut + 1,
                r.fsck.trim()
            );
        }
    }
    for (cut, r) in reports.iter().enumerate() {
        let cut = cut + 1;
        assert!(
            r.acked_ever == 0 || r.kept_ever > 0,
            "cut {cut}: the daemon restarted on an empty state"
        );
        assert_eq!(r.lost_total, 0, "cut {cut}: acknowledged messages lost");
        assert_eq!(r.duplicated, 0, "cut {cut}: messages applied twice");
        assert_eq!(r.invented, 0, "cut {cut}: events for messages never posted");
        assert!(r.settled, "cut {cut}: the processor never caught up");
    }
    check_outbox_order(&daemon.all_events().await);
}

/// Starts the round's clients: each posts its messages one by one, retrying each until it is
/// answered 2xx (as a real integration would), and records every attempt and acknowledgement.
fn post_round(
    daemon: &Daemon,
    round: usize,
    ledger: &Arc<Mutex<Ledger>>,
    acked_now: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let url = daemon.url("/hooks/api");
    (0..CLIENTS)
        .map(|c| {
            let (client, url, ledger, acked_now) = (
                client.clone(),
                url.clone(),
                ledger.clone(),
                acked_now.clone(),
            );
            tokio::spawn(async move {
                for n in 0..PER_CLIENT {
                    let external_id = format!("r{round}-c{c}-m{n}");
                    let body = api_message(
                        &external_id,
                        &format!("r{round}-c{c}-t{}", n / 5),
                        &format!("user{c}-{}@example.com", n % 7),
                        "hi",
                    );
                    ledger.lock().unwrap().attempted.insert(external_id.clone());
                    let deadline = Instant::now() + Duration::from_secs(90);
                    loop {
                        let sent = client.post(&url).json(&body).send().await;
                        if sent.as_ref().is_ok_and(|r| r.status().is_success()) {
                            ledger.lock().unwrap().acked.insert(external_id, round);
                            acked_now.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        if let Ok(response) = sent {
                            let status = response.status();
                            assert!(status.is_server_error(), "{status} for {external_id}");
                        }
                        assert!(
                            Instant::now() < deadline,
                            "{external_id} never acknowledged"
                        );
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
            })
        })
        .collect()
}

/// Waits until the processor has applied everything journaled; false if it does not within
/// 30 s (reported rather than panicking, so that every cut's figures are printed).
async fn settle(daemon: &Daemon) -> bool {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let status = client.get(daemon.url("/v1/status")).send().await;
        if let Ok(status) = status {
            if let Ok(status) = status.json::<Value>().await {
                if status["processor"]["cursor"] == status["journal"]["durable_seq"] {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Compares the outbox with the ledger after `round`.
/// `before` holds what was acknowledged when the daemon was killed.
fn measure(ledger: &Ledger, round: usize, events: &[Value], before: &HashSet<String>) -> CutReport {
    let mut per_message: HashMap<&str, usize> = HashMap::new();
    for event in events {
        let kind = event["type"].as_str().unwrap_or_default();
        if kind == "deskgate.ticket.created" || kind == "deskgate.ticket.message_added" {
            let id = event["data"]["message"]["external_id"]
                .as_str()
                .unwrap_or_default();
            *per_message.entry(id).or_default() += 1;
        }
    }
    let present = |id: &String| per_message.contains_key(id.as_str());
    let this_round = ledger.acked.iter().filter(|(_, r)| **r == round);
    CutReport {
        acked_before_cut: 0,
        lost_this_round: this_round.filter(|(id, _)| !present(id)).count(),
        lost_total: ledger.acked.keys().filter(|id| !present(id)).count(),
        acked_ever: before.len(),
        kept_ever: before.iter().filter(|id| present(id)).count(),
        duplicated: per_message.values().filter(|&&n| n > 1).count(),
        invented: per_message
            .keys()
            .filter(|id| !ledger.attempted.contains(**id))
            .count(),
        settled: false,
        fsck: String::new(),
    }
}

/// Every event a reader saw before the cut is there after it, unchanged and in its place: the
/// processor shows a step to readers only once it is durable, and a replay of the journal
/// produces the same events anyway.
fn assert_read_events_kept(round: usize, seen: &[Value], after: &[Value]) {
    assert!(
        after.len() >= seen.len(),
        "round {round}: {} events were read before the cut, {} are left",
        seen.len(),
        after.len()
    );
    for (before, now) in seen.iter().zip(after) {
        assert_eq!(
            before, now,
            "round {round}: an event read before the cut changed"
        );
    }
}

/// Sequence numbers run 1..=N without a gap, and event ids are unique.
fn check_outbox_order(events: &[Value]) {
    let mut ids = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        let seq: u64 = event["sequence"].as_str().unwrap().parse().unwrap();
        assert_eq!(seq, i as u64 + 1, "sequence gap or reorder");
        assert!(
            ids.insert(event["id"].as_str().unwrap().to_owned()),
            "event id repeated: {event}"
        );
    }
}

/// The kit itself, without deskgate: a cut keeps exactly what was fsynced or fdatasynced, so
/// that a passing power-loss test cannot be a filesystem that keeps everything.
#[test]
fn the_lazy_filesystem_keeps_only_what_was_synced() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut disk = Disk::files(dir.path());
    let root = dir.path().join("state");
    let mut synced = std::fs::File::create(root.join("synced")).unwrap();
    synced.write_all(b"kept").unwrap();
    synced.sync_data().unwrap();
    synced.write_all(b" and lost").unwrap();
    let mut shrunk = std::fs::File::create(root.join("shrunk")).unwrap();
    shrunk.write_all(&[7u8; 10_000]).unwrap();
    shrunk.sync_all().unwrap();
    shrunk.set_len(100).unwrap();
    std::fs::write(root.join("never"), b"lost").unwrap();
    assert_eq!(
        std::fs::read(root.join("synced")).unwrap(),
        b"kept and lost"
    );
    assert_eq!(std::fs::metadata(root.join("shrunk")).unwrap().len(), 100);
    drop((synced, shrunk));
    disk.cut_and_recover();
    assert_eq!(std::fs::read(root.join("synced")).unwrap(), b"kept");
    assert_eq!(std::fs::read(root.join("shrunk")).unwrap(), [7u8; 10_000]);
    // The per-file model keeps the file's creation, not its unsynced content.
    assert_eq!(std::fs::read(root.join("never")).unwrap(), b"");

    // On ext4 over the lazy filesystem, an unsynced file does not come back with its content.
    let dir = tempfile::tempdir().unwrap();
    let mut disk = Disk::ext4(dir.path());
    let root = dir.path().join("state");
    let mut synced = std::fs::File::create(root.join("synced")).unwrap();
    synced.write_all(b"kept").unwrap();
    synced.sync_all().unwrap();
    drop(synced);
    std::fs::write(root.join("never"), b"lost").unwrap();
    disk.cut_and_recover();
    assert_eq!(std::fs::read(root.join("synced")).unwrap(), b"kept");
    assert_ne!(
        std::fs::read(root.join("never")).ok(),
        Some(b"lost".to_vec())
    );
}
