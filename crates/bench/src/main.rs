//! `deskgate-bench`: performance measured as ratios against a baseline in the same run.
//!
//! These machines are shared and noisy, so every mode measures deskgate and a baseline doing
//! the least the same job needs, alternating rounds under the same load, and prints the ratio:
//!
//! ```text
//! cargo run --release -p deskgate-bench -- ingest
//! bench ingest-api: deskgate=<req/s> baseline=<req/s> durable=<req/s> ratio=<deskgate/baseline> ratio_durable=<deskgate/durable> p99_ms=<ms> durable_p99_ms=<ms> lag_s=<s>
//! ```
//!
//! The ingest modes have a second baseline, `durable`: the least that keeps deskgate's promise
//! (the same parsing, a group-committed append and `fdatasync` before the 2xx).
//!
//! Servers run in child processes (this same binary with a hidden subcommand), so the load
//! generator and the server under test never share a runtime. The real peers, the `deskgate`
//! child process and the `chaos` and `soak` drivers are the test kit's (`crates/test-kit`),
//! shared with the end-to-end tests.

mod contacts;
mod durable;
mod imap;
mod load;
mod nats;
mod processor;
mod servers;
mod whatsapp;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The daemon's allocator (deskgate::allocator), so that the deskgate server child allocates
/// as `deskgate run` does. The baselines, children of this same binary, use it too: a
/// baseline the allocator speeds up lowers deskgate's ratios, never flatters them.
#[global_allocator]
static ALLOCATOR: deskgate::allocator::Allocator = deskgate::allocator::Allocator;

#[derive(Parser)]
#[command(
    name = "deskgate-bench",
    about = "deskgate benchmarks, measured against a baseline"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// The API channel under 64 connections of 1 KiB JSON posts, against a no-op hyper server
    /// and a bare durable journal server.
    Ingest {
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds of load per round (after a one-second warm-up).
        #[arg(long, default_value_t = 5)]
        secs: u64,
        /// Rounds of each server, alternating.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// The NATS JetStream sink delivering an outbox of `events` events, against a bare
    /// async-nats publish loop; then inbound-2xx-to-stream latency at `e2e_rate` messages/s.
    Nats {
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Rounds of each side, alternating, each on a fresh nats-server: one run of the bare
        /// loop swung between 40k and 98k publishes/s from one bench run to the next.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 200)]
        e2e_rate: u64,
        #[arg(long, default_value_t = 10)]
        e2e_secs: u64,
    },
    /// Signed WhatsApp text-message webhooks (unique wamids) under 64 connections, against a
    /// no-op hyper server and a bare durable journal server.
    Whatsapp {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 5)]
        secs: u64,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// IMAP ingest of N mails from a real Dovecot against a bare async-imap fetch, and the
    /// IDLE latency from APPEND to event.
    Imap {
        /// Mails in the mailbox.
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        /// New mails appended one at a time while deskgate is in IDLE.
        #[arg(long, default_value_t = 100)]
        idle_samples: usize,
        /// deskgate's `batch_size` (mails per UID FETCH).
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
    },
    /// The processor alone applying a journal of `messages` API-channel messages (the ingest
    /// mode's), against reading and decoding the same journal; prints the state operations per
    /// message (in-process).
    Processor {
        #[arg(long, default_value_t = 50_000)]
        messages: u64,
        /// Rounds, each on a fresh state; the fastest of each side is printed.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Records per step (default: the daemon's `events.processor_batch`). Under live load
        /// a step takes what one group commit made durable, often a few dozen records; here
        /// each step is also synced, so small steps are timed with a sync each.
        #[arg(long)]
        batch: Option<usize>,
        /// Apply through the processor's own thread, as the daemon replays a backlog at
        /// start-up (each step committed on a second thread while the next is applied, and
        /// synced when no journal write covers it), instead of one synced step after another.
        #[arg(long)]
        replay: bool,
    },
    /// Identity lookups, RSS and disk at 10k, 100k and 1M contacts (in-process).
    Contacts {
        /// Seconds of lookups at each size.
        #[arg(long, default_value_t = 3)]
        secs: u64,
        /// The storage engine's block cache in MiB (default: the daemon's).
        #[arg(long, default_value_t = deskgate::config::DEFAULT_CACHE_CAPACITY_BYTES >> 20)]
        cache_mb: u64,
    },
    /// Mixed load on every channel kind while deskgate is killed and its peers fail; checks
    /// that nothing acknowledged is lost, duplicated or invented. The defaults are the long
    /// run; the end-to-end test `chaos` runs a short one.
    Chaos(test_kit::chaos::Args),
    /// Steady mixed load for a long time: resident memory and the state directory must stop
    /// growing once outbox retention is reached.
    Soak(test_kit::soak::Args),
    /// Internal: the lookup side of `contacts`, in a fresh process on loaded state.
    #[command(hide = true)]
    ContactsLookups {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        secs: u64,
        #[arg(long)]
        cache_bytes: u64,
    },
    /// Internal: serve one server in this process until killed.
    #[command(hide = true)]
    Serve {
        #[command(subcommand)]
        server: servers::Server,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.mode {
            Mode::Ingest {
                connections,
                secs,
                rounds,
            } => ingest(connections, Duration::from_secs(secs), rounds).await,
            Mode::Nats {
                events,
                rounds,
                e2e_rate,
                e2e_secs,
            } => nats::run(events, rounds, e2e_rate, e2e_secs).await,
            Mode::Whatsapp {
                connections,
                secs,
                rounds,
            } => whatsapp::bench(connections, Duration::from_secs(secs), rounds).await,
            Mode::Imap {
                messages,
                idle_samples,
                batch_size,
            } => imap::run(messages, idle_samples, batch_size).await,
            Mode::Processor {
                messages,
                rounds,
                batch,
                replay,
            } => {
                tokio::task::spawn_blocking(move || processor::run(messages, rounds, batch, replay))
                    .await?
            }
            Mode::Contacts { secs, cache_mb } => {
                tokio::task::spawn_blocking(move || contacts::run(secs, cache_mb)).await?
            }
            Mode::ContactsLookups {
                dir,
                size,
                secs,
                cache_bytes,
            } => {
                tokio::task::spawn_blocking(move || {
                    contacts::serve_lookups(&dir, size, secs, cache_bytes)
                })
                .await?
            }
            Mode::Chaos(args) => test_kit::chaos::run(args).await.map(drop),
            Mode::Soak(args) => test_kit::soak::run(args).await,
            Mode::Serve { server } => servers::serve(server).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("deskgate-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn ingest(connections: usize, secs: Duration, rounds: usize) -> anyhow::Result<()> {
    load::compare("ingest-api", (connections, secs, rounds), load::Target::api).await
}
