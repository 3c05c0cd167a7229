//! Builds every part of the daemon, owns its tasks, and shuts them down in order.
//!
//! Start-up: open the state, start the journal writer and the processor, bind the listener.
//! Shutdown (SIGTERM): stop accepting and let in-flight requests finish; the journal writer
//! flushes what it holds and stops once no request can reach it; the processor applies
//! everything journaled; all inside the grace period. Whatever the grace period cuts short is
//! already durable in the journal and is applied at the next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::channels::email::imap::{self, MailboxRegistry};
use crate::config::Config;
use crate::events::sinks::{self, SinkContext};
use crate::events::{OutboxReader, OutboxWriter};
use crate::http::{self, AppState};
use crate::ids::Minter;
use crate::journal;
use crate::outbound::sender::Sender;
use crate::outbound::Planner;
use crate::processor::{self, Processor};
use crate::routing::RuleSet;
use crate::store::{keys, Blobs, Store};

/// A started daemon.
pub struct App {
    /// The address the HTTP listener is bound to (useful when the config asks for port 0).
    pub local_addr: SocketAddr,
    /// Where the events and control API listen (the same as `local_addr` unless
    /// `server.control_listen` is set).
    pub control_addr: SocketAddr,
    /// Cancelled when the app stopped itself to be restarted (storage recovery).
    restart: CancellationToken,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl App {
    /// Opens the state and starts every task; returns once the listener is bound.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        let dir = config.state.dir.clone();
        let cache_capacity_bytes = config.state.cache_capacity_bytes;
        crate::channels::identity::set_default_region(config.contacts.default_region.as_deref())
            .map_err(|message| anyhow::anyhow!("contacts.default_region: {message}"))?;
        let store = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating state directory {}", dir.display()))?;
            let store = Store::open_with(&dir, cache_capacity_bytes)
                .with_context(|| format!("opening state in {}", dir.display()))?;
            let instance_id = instance_id(&store)?;
            let blobs =
                Blobs::open(&dir).with_context(|| format!("opening blobs in {}", dir.display()))?;
            anyhow::Ok((store, blobs, instance_id))
        })
        .await?;
        let (store, blobs, instance_id) = store?;

        let minter = Minter::new(instance_id);
        let rules = Arc::new(RuleSet::compile(&config));
        let outbox = OutboxWriter::new(config.events.instance.clone(), instance_id);
        let planner = Planner::new(&config.outbound).map_err(|e| anyhow::anyhow!("{e}"))?;
        let processor =
            Processor::new(store.clone(), minter, outbox, config.events.processor_batch)
                .with_routing(Arc::clone(&rules))
                .with_outbound(Arc::new(planner))
                .with_blobs(blobs.clone());
        let position = processor
            .position()
            .context("reading the processor's position")?;
        let (journal, writer) =
            journal::start(store.clone(), &config.journal).context("starting the journal")?;
        let (position_tx, position_rx) = watch::channel(position);

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let restart = CancellationToken::new();
        tracker.spawn(watch_storage(
            store.clone(),
            config.state.clone(),
            shutdown.clone(),
            restart.clone(),
        ));
        let processor = processor::start(processor, journal.durable(), position_tx);

        let mailboxes = spawn_mailboxes(&config, &tracker, &shutdown, (&store, &blobs, &journal));
        // The sender holds a journal handle: it must stop before the writer can (see below).
        let sender = Sender::new(
            &config.outbound,
            store.clone(),
            blobs.clone(),
            journal.clone(),
            position_rx.clone(),
            shutdown.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let sender = tokio::spawn(sender.run());
        // Sink tasks stop on the shutdown token, which also drops their journal handles so that
        // the journal writer can stop.
        let sinks = sinks::start(
            &config.sinks,
            &config.retention,
            SinkContext {
                store: store.clone(),
                visible: position_rx.clone(),
                journal: journal.clone(),
                shutdown: shutdown.clone(),
            },
            &tracker,
        )
        .context("starting the event sinks")?;

        let tokens = config
            .control
            .load_tokens()
            .map_err(|p| anyhow::anyhow!("{p}"))?;
        let rate_limits = http::ratelimit::RateLimits::new(&config.channels);
        tracker.spawn(
            rate_limits
                .clone()
                .housekeeping(Duration::from_secs(60), shutdown.clone()),
        );
        let state = AppState {
            rate_limits,
            tokens: http::Tokens::new(tokens),
            store: store.clone(),
            blobs,
            metrics: crate::telemetry::install(),
            body_read_timeout_secs: config.server.body_read_timeout_secs,
            trusted_proxies: Arc::new(config.server.trusted_proxies.clone()),
            routing: rules,
            channels: Arc::new(config.channels.clone()),
            journal,
            outbox: OutboxReader::new(store.clone(), position_rx.clone()),
            position: position_rx,
            events: Arc::new(config.events.clone()),
            shutdown: shutdown.clone(),
            mailboxes,
            sinks,
        };
        let listener = http::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let local_addr = listener.local_addr()?;
        let mut listeners = Vec::new();
        let control_addr = match config.server.control_listen {
            Some(addr) => {
                let control = http::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr}"))?;
                let control_addr = control.local_addr()?;
                listeners.push((listener, http::public_router(state.clone())));
                listeners.push((control, http::private_router(state)));
                control_addr
            }
            None => {
                listeners.push((listener, http::router(state)));
                local_addr
            }
        };
        tracing::info!(
            addr = %local_addr,
            control_addr = %control_addr,
            processor_cursor = position.cursor,
            "deskgate listening"
        );

        let server_shutdown = shutdown.clone();
        let server_config = config.server.clone();
        let done = tokio::spawn(async move {
            let servers = listeners.into_iter().map(|(listener, router)| {
                http::serve(listener, router, server_shutdown.clone(), &server_config)
            });
            futures::future::join_all(servers).await;
            // The routers (and every journal handle in them) are gone with the servers: the
            // writer drains its queue, flushes, and stops; the processor then catches up.
            let grace = Duration::from_secs(server_config.shutdown_grace_secs);
            let mut sender = sender;
            if tokio::time::timeout(grace, &mut sender).await.is_err() {
                // An unfinished send is retried at the next start; its journal handle must go.
                tracing::warn!("outbound sender still busy after the grace period; stopping it");
                sender.abort();
            }
            let writer_done = tokio::task::spawn_blocking(move || writer.join());
            if tokio::time::timeout(grace, writer_done).await.is_err() {
                tracing::warn!("journal writer still busy after the grace period");
            }
            let processor_done = tokio::task::spawn_blocking(move || processor.join());
            if tokio::time::timeout(grace, processor_done).await.is_err() {
                tracing::warn!(
                    "processor still busy after the grace period; the journal keeps the rest"
                );
            }
            tracker.close();
            if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
                tracing::warn!("tasks still running after the grace period");
            }
            if let Err(error) = store.flush() {
                tracing::error!(%error, "final flush failed");
            }
            tracing::info!("deskgate stopped");
        });
        Ok(App {
            local_addr,
            control_addr,
            restart,
            shutdown,
            done,
        })
    }

    /// A token that begins shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown has finished, and says why it stopped.
    pub async fn wait(self) -> Stopped {
        if let Err(error) = self.done.await {
            tracing::error!(%error, "shutdown task failed");
        }
        if self.restart.is_cancelled() {
            Stopped::RestartRequested
        } else {
            Stopped::Shutdown
        }
    }
}

/// Why a started app stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Its shutdown token was cancelled.
    Shutdown,
    /// It stopped itself so that the process starts it again: the database refused writes after
    /// an I/O failure and space has returned.
    RestartRequested,
}

/// After the store has failed (a full disk), waits for free space and then asks for a restart,
/// which reopens the database. Meanwhile inputs answer 503 and `/readyz` reports the failure.
async fn watch_storage(
    store: Store,
    state: crate::config::StateConfig,
    shutdown: CancellationToken,
    restart: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if !store.failed() {
            continue;
        }
        let free = nix::sys::statvfs::statvfs(&state.dir)
            .map(|s| s.blocks_available() * s.fragment_size())
            .unwrap_or(0);
        if free >= state.min_free_bytes {
            tracing::warn!(
                free_bytes = free,
                "storage has room again; restarting to reopen it"
            );
            restart.cancel();
            shutdown.cancel();
            return;
        }
    }
}

/// Starts one task per IMAP mailbox; they stop when shutdown begins, which drops their journal
/// handles so that the journal writer can finish.
fn spawn_mailboxes(
    config: &Config,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    (store, blobs, journal): (&Store, &Blobs, &journal::JournalHandle),
) -> MailboxRegistry {
    let registry = MailboxRegistry::default();
    for (id, channel) in &config.channels {
        let Some(imap_config) = &channel.imap else {
            continue;
        };
        let mailbox = imap::Mailbox {
            channel: id.clone(),
            config: imap_config.clone(),
            email: channel.email_options(),
            store: store.clone(),
            blobs: blobs.clone(),
            journal: journal.clone(),
            registry: registry.clone(),
        };
        tracker.spawn(imap::run(mailbox, shutdown.clone()));
    }
    registry
}

/// This database's instance id, created (and flushed) on first start.
fn instance_id(store: &Store) -> anyhow::Result<Uuid> {
    if let Some(id) = store.state_get::<Uuid>(keys::INSTANCE_ID)? {
        return Ok(id);
    }
    let id = Uuid::new_v4();
    let mut batch = store.state_batch();
    batch.put(keys::INSTANCE_ID.to_vec(), &id);
    batch.commit()?;
    store.flush()?;
    tracing::info!(instance_id = %id, "initialised a new state directory");
    Ok(id)
}
