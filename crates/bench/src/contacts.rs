//! `contacts` mode: identity lookups at 10k, 100k and 1M contacts, with the resident memory
//! and disk the state takes.
//!
//! Contacts are bulk-loaded in-process through `contacts::resolve` (the same code the
//! processor runs), 10,000 per committed batch, with mixed identities: email; email + phone;
//! an integration id + email; a Messenger PSID + phone. The state grows from one size to the
//! next, and each size is measured when the state holds exactly that many contacts. Lookups
//! are identity → contact id reads of random loaded identities from two threads (the machine
//! has two cores), run in a fresh child process that opens the loaded state as a restarted
//! daemon would, so its RSS is what serving that many contacts takes, not what the loader's
//! allocator kept from the load. The loader's own RSS is printed on stderr. The block cache is the
//! daemon's default (`config::DEFAULT_CACHE_CAPACITY_BYTES`) unless `--cache-mb` says otherwise.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use deskgate::contacts;
use deskgate::identity;
use deskgate::ids::Minter;
use deskgate::model::{Identity, Sender};
use deskgate::store::Store;

const SIZES: [(usize, &str); 3] = [(10_000, "10k"), (100_000, "100k"), (1_000_000, "1m")];
const BATCH: usize = 10_000;
const THREADS: usize = 2;

/// The identities of loaded contact `i`, strongest first.
fn identities(i: usize) -> Vec<Identity> {
    let email = || Identity::Email {
        address: format!("person{i}@example{}.com", i % 97),
    };
    let phone = || Identity::Phone {
        number: format!("+1555{i:07}"),
    };
    match i % 4 {
        0 => vec![email()],
        1 => vec![email(), phone()],
        2 => vec![identity::external("api", &format!("crm-{i}")), email()],
        _ => vec![
            identity::messenger("fb", "page-1", &format!("{i}")),
            phone(),
        ],
    }
}

pub fn run(secs: u64, cache_mb: u64) -> anyhow::Result<()> {
    let cache = cache_mb * 1024 * 1024;
    let dir = tempfile::tempdir()?;
    let minter = Minter::new(uuid::Uuid::new_v4());
    let mut loaded = 0;
    for (size, label) in SIZES {
        let store = Store::open_with(dir.path(), cache)?;
        let started = Instant::now();
        while loaded < size {
            let end = (loaded + BATCH).min(size);
            load(&store, &minter, loaded..end)?;
            loaded = end;
        }
        store.flush()?;
        eprintln!(
            "  {label}: loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        eprintln!("  {label}: loader rss_mb={}", rss_mb()?);
        let disk_mb = disk_bytes(dir.path())? / (1024 * 1024);
        store.flush()?;
        drop(store);
        let (per_sec, rss) = measure_in_child(dir.path(), size, secs, cache)?;
        println!(
            "bench contacts-{label}: lookups_per_s={per_sec:.0} rss_mb={rss} disk_mb={disk_mb}"
        );
    }
    Ok(())
}

/// Runs [`serve_lookups`] in a child process on the same state (one process at a
/// time: the loader has closed its handle and reopens it for the next size).
fn measure_in_child(dir: &Path, size: usize, secs: u64, cache: u64) -> anyhow::Result<(f64, u64)> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args([
            "contacts-lookups",
            "--size",
            &size.to_string(),
            "--secs",
            &secs.to_string(),
        ])
        .args(["--cache-bytes", &cache.to_string()])
        .arg("--dir")
        .arg(dir)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "lookup child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let mut fields = text.split_whitespace();
    let per_sec = fields
        .next()
        .context("no lookups from the child")?
        .parse()?;
    let rss = fields.next().context("no rss from the child")?.parse()?;
    let at_open: u64 = fields
        .next()
        .context("no rss at open from the child")?
        .parse()?;
    let cores: f64 = fields
        .next()
        .context("no cpu use from the child")?
        .parse()?;
    // What the engine holds for the database before anything is cached, and how much of
    // the machine the lookups got (on a shared machine, other work takes the rest).
    eprintln!("  {size} contacts: rss_mb={at_open} once the state is open, before lookups");
    eprintln!(
        "  {size} contacts: the lookups used {cores:.2} of {THREADS} cores ({:.0} lookups per CPU second)",
        per_sec / cores.max(0.01)
    );
    Ok((per_sec, rss))
}

/// The child side: opens the state, looks up, prints `<lookups/s> <rss MB> <rss MB at open>
/// <cores used>`.
pub fn serve_lookups(dir: &Path, size: usize, secs: u64, cache: u64) -> anyhow::Result<()> {
    let store = Store::open_with(dir, cache)?;
    let at_open = rss_mb()?;
    let (cpu_before, started) = (cpu_secs()?, Instant::now());
    let per_sec = lookups(&store, size, Duration::from_secs(secs))?;
    let cores = (cpu_secs()? - cpu_before) / started.elapsed().as_secs_f64();
    println!("{per_sec:.0} {} {at_open} {cores:.2}", rss_mb()?);
    Ok(())
}

/// CPU seconds this process has used (user and system), from `/proc/self/stat`.
fn cpu_secs() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name: state is the 3rd field, utime the 14th.
    let rest = stat
        .rsplit_once(')')
        .context("no command name in /proc/self/stat")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    // Linux reports these in USER_HZ, which is 100 on every architecture it runs on here.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn load(store: &Store, minter: &Minter, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    let mut batch = store.state_batch();
    let at = Utc::now();
    for i in range {
        let sender = Sender {
            name: None,
            identities: identities(i),
            ..Sender::default()
        };
        let resolution = contacts::resolve(&mut batch, minter, &sender, at)?;
        anyhow::ensure!(resolution.created, "contact {i} should be new");
    }
    batch.commit()?;
    Ok(())
}

/// Random identity lookups from [`THREADS`] threads for `duration`; every one must hit.
fn lookups(store: &Store, size: usize, duration: Duration) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, stop, total) = (store.clone(), stop.clone(), total.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        // xorshift64: cheap, and the same sequence every run.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let i = (x % size as u64) as usize;
                        let identity = &identities(i)[0];
                        let found = contacts::find_id(&store, identity)?;
                        anyhow::ensure!(found.is_some(), "identity of contact {i} not found");
                        done += 1;
                    }
                }
                total.fetch_add(done, Ordering::Relaxed);
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a lookup thread panicked"))??;
    }
    Ok(total.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn rss_mb() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb / 1024)
}

fn disk_bytes(path: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
