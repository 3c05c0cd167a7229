//! Builds every part of the daemon, owns its tasks, and shuts them down in order.
//!
//! Start-up, one function per concern: open the state (`open_state`) and refuse a config
//! that strands stored tickets (`moves.rs`); start the journal writer and the processor
//! (`start_pipeline`) and journal the config's moves of stored tickets (`moves.rs`); the IMAP
//! mailboxes (`spawn_mailboxes`); the outbound sender and the event sinks
//! (`start_delivery`); the housekeeping passes (`start_housekeeping`); bind the listeners
//! (`start_http`). Shutdown (SIGTERM, `stop.rs`): stop accepting and let in-flight
//! requests finish; the journal writer flushes what it holds and stops once no request can
//! reach it; the processor applies everything journaled; all inside the grace period.
//! Whatever the grace period cuts short is already durable in the journal and is applied at
//! the next start.

mod moves;
mod stop;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::backup::Backups;
use crate::channels::email::imap::{self, MailboxRegistry};
use crate::channels::meta::profile::Profiles;
use crate::config::Config;
use crate::events::sinks::{self, SinkContext, Sinks};
use crate::events::{OutboxReader, OutboxWriter};
use crate::housekeeping::Housekeeping;
use crate::http::{self, AppState, Shared};
use crate::ids::Minter;
use crate::journal;
use crate::live::{Live, LiveHandle};
use crate::model::{PipelineMove, Position};
use crate::outbound::sender::Sender;
use crate::processor::{self, Processor};
use crate::store::{keys, Blobs, Store, WriteGate};

pub use moves::Stranding;

/// A started daemon.
pub struct App {
    /// The address the HTTP listener is bound to (useful when the config asks for port 0).
    pub local_addr: SocketAddr,
    /// Where the events and control API listen (the same as `local_addr` unless
    /// `server.control_listen` is set).
    pub control_addr: SocketAddr,
    /// What a reload replaces.
    live: LiveHandle,
    /// The state, which a reload must not strand (tickets in a pipeline or status it removes).
    store: Store,
    /// The config's moves of stored tickets, for the task that journals them when due.
    moves: watch::Sender<Vec<PipelineMove>>,
    /// Cancelled when the app stopped itself to be restarted (storage recovery).
    restart: CancellationToken,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

/// The opened state directory.
struct Opened {
    store: Store,
    blobs: Blobs,
    instance_id: Uuid,
    /// Held by the state tree's writers (processor steps, outbox compaction) and by backups.
    gate: WriteGate,
}

/// The journal writer and the processor, running.
struct Pipeline {
    journal: journal::JournalHandle,
    writer: std::thread::JoinHandle<()>,
    processor: std::thread::JoinHandle<()>,
    /// Where the processor stood at start-up.
    started_at: Position,
    /// Where it stands now, published after every step.
    position: watch::Receiver<Position>,
}

/// The tasks that take things out: the outbound sender and the event sinks.
struct Delivery {
    sender: tokio::task::JoinHandle<()>,
    sinks: Sinks,
}

/// Every task's cancellation and tracking.
#[derive(Clone)]
struct Tasks {
    shutdown: CancellationToken,
    restart: CancellationToken,
    tracker: TaskTracker,
}

impl App {
    /// Opens the state and starts every task; returns once the listeners are bound.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        let phone_region =
            crate::identity::Region::parse(config.contacts.default_region.as_deref())
                .map_err(|message| anyhow::anyhow!("contacts.default_region: {message}"))?;
        // Before any task starts, so that nothing recorded early is lost.
        let metrics = crate::telemetry::start(&config);
        let opened = open_state(&config.state).await?;
        moves::refuse_stranding(&config, &opened.store).await?;
        let live = LiveHandle::new(Live::compile(&config, None).map_err(|e| anyhow::anyhow!(e))?);
        let tasks = Tasks {
            shutdown: CancellationToken::new(),
            restart: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        tasks.tracker.spawn(watch_storage(
            opened.store.clone(),
            config.state.clone(),
            tasks.clone(),
        ));
        tasks
            .tracker
            .spawn(prune_rate_limits(live.clone(), tasks.shutdown.clone()));
        let pipeline = start_pipeline(&config, &opened, live.clone())?;
        let moves = moves::start(&config, &opened.store, &pipeline.journal, &tasks).await;
        let mailboxes = spawn_mailboxes(&config, &tasks, (&opened, &pipeline.journal));
        let delivery = start_delivery(&config, &opened, &pipeline, &tasks)?;
        start_housekeeping(&config, &opened, &pipeline, &tasks);
        let state = AppState::new(Shared {
            tokens: control_tokens(&config)?,
            store: opened.store.clone(),
            blobs: opened.blobs.clone(),
            metrics,
            body_read_timeout_secs: config.server.body_read_timeout_secs,
            trusted_proxies: Arc::new(config.server.trusted_proxies.clone()),
            live: live.clone(),
            channels: Arc::new(config.channels.clone()),
            journal: pipeline.journal.clone(),
            outbox: OutboxReader::new(opened.store.clone(), pipeline.position.clone()),
            position: pipeline.position.clone(),
            events: Arc::new(config.events.clone()),
            shutdown: tasks.shutdown.clone(),
            mailboxes,
            sinks: delivery.sinks.clone(),
            backups: Backups::new(
                opened.store.clone(),
                opened.blobs.clone(),
                opened.gate.clone(),
                pipeline.journal.durable(),
            ),
            phone_region,
            profiles: Arc::new(Profiles::new(&config.outbound).map_err(anyhow::Error::msg)?),
        });
        let (listeners, local_addr, control_addr) = start_http(&config, state).await?;
        tracing::info!(
            addr = %local_addr,
            control_addr = %control_addr,
            processor_cursor = pipeline.started_at.cursor,
            "deskgate listening"
        );
        let (shutdown, restart) = (tasks.shutdown.clone(), tasks.restart.clone());
        let stopping = stop::Stopping {
            listeners,
            pipeline,
            sender: delivery.sender,
            tasks,
            store: opened.store.clone(),
            server: config.server.clone(),
        };
        Ok(App {
            local_addr,
            control_addr,
            live,
            store: opened.store,
            moves,
            restart,
            shutdown,
            done: tokio::spawn(stop::stop_in_order(stopping)),
        })
    }

    /// What `config` would strand: pipelines and statuses it removes that stored tickets use.
    pub fn stranded_by(&self, config: &Config) -> Vec<crate::config::ConfigProblem> {
        match crate::tickets::pipeline_usage(&self.store) {
            Ok(usage) => crate::tickets::stranded(config, &usage),
            Err(error) => vec![crate::config::ConfigProblem {
                path: "routing.pipelines".to_owned(),
                message: format!("cannot read the tickets' pipelines to check: {error}"),
            }],
        }
    }

    /// Journals `config`'s moves if stored tickets are where one applies. Call it after the
    /// reload that put `config` in force: the processor moves tickets by the rules in force,
    /// and a move's target exists only in the new ones.
    pub fn apply_moves(&self, config: &Config) {
        self.moves.send_replace(crate::tickets::moves_of(config));
    }

    /// What a reload replaces (see [`LiveHandle::reload`]).
    pub fn live(&self) -> &LiveHandle {
        &self.live
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

/// Creates (if needed) and opens the state directory: the database (with its one-off index of
/// tickets by contact), the blobs, the instance id.
async fn open_state(state: &crate::config::StateConfig) -> anyhow::Result<Opened> {
    let dir = state.dir.clone();
    let cache_capacity_bytes = state.cache_capacity_bytes;
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        let store = Store::open_with(&dir, cache_capacity_bytes)
            .with_context(|| format!("opening state in {}", dir.display()))?;
        crate::tickets::fold_routing_records(&store)
            .with_context(|| format!("folding the tickets in {} into one record", dir.display()))?;
        crate::contacts::ticket_index::build_once(&store)
            .with_context(|| format!("indexing the tickets in {} by contact", dir.display()))?;
        let instance_id = instance_id(&store)?;
        let blobs =
            Blobs::open(&dir).with_context(|| format!("opening blobs in {}", dir.display()))?;
        anyhow::Ok(Opened {
            store,
            blobs,
            instance_id,
            gate: WriteGate::default(),
        })
    })
    .await?
}

/// Starts the journal writer and the processor (which reads its rules from `live`).
fn start_pipeline(config: &Config, opened: &Opened, live: LiveHandle) -> anyhow::Result<Pipeline> {
    let store = &opened.store;
    let outbox = OutboxWriter::new(config.events.source(opened.instance_id), opened.instance_id);
    let minter = Minter::new(opened.instance_id);
    let processor = Processor::new(store.clone(), minter, outbox, config.events.processor_batch)
        .with_live(live)
        .with_gate(opened.gate.clone())
        .with_blobs(opened.blobs.clone());
    let started_at = processor
        .position()
        .context("reading the processor's position")?;
    let (journal, writer) =
        journal::start(store.clone(), &config.journal).context("starting the journal")?;
    let (position_tx, position) = watch::channel(started_at);
    let processor = processor::start(processor, journal.durable(), position_tx);
    Ok(Pipeline {
        journal,
        writer,
        processor,
        started_at,
        position,
    })
}

/// Starts the outbound sender and one task per event sink.
fn start_delivery(
    config: &Config,
    opened: &Opened,
    pipeline: &Pipeline,
    tasks: &Tasks,
) -> anyhow::Result<Delivery> {
    // The sender holds a journal handle: it must stop before the writer can (see
    // `stop_in_order`).
    let sender = Sender::new(
        &config.outbound,
        opened.store.clone(),
        opened.blobs.clone(),
        pipeline.journal.clone(),
        pipeline.position.clone(),
        tasks.shutdown.clone(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Sink tasks stop on the shutdown token, which also drops their journal handles so that
    // the journal writer can stop.
    let context = SinkContext {
        store: opened.store.clone(),
        visible: pipeline.position.clone(),
        journal: pipeline.journal.clone(),
        shutdown: tasks.shutdown.clone(),
    };
    let sinks =
        sinks::start(&config.sinks, context, &tasks.tracker).context("starting the event sinks")?;
    Ok(Delivery {
        sender: tokio::spawn(sender.run()),
        sinks,
    })
}

/// The control API's bearer tokens, read from their files.
fn control_tokens(config: &Config) -> anyhow::Result<http::Tokens> {
    let tokens = config.control.load_tokens().map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        anyhow::anyhow!("{}", problems.join("; "))
    })?;
    Ok(http::Tokens::new(tokens))
}

/// Starts the retention passes and the blob sweep ([`crate::housekeeping`]).
fn start_housekeeping(config: &Config, opened: &Opened, pipeline: &Pipeline, tasks: &Tasks) {
    let _sinks: Vec<String> = config.sinks.keys().cloned().collect();
    Housekeeping {
        store: opened.store.clone(),
        blobs: opened.blobs.clone(),
        visible: pipeline.position.clone(),
        gate: opened.gate.clone(),
        shutdown: tasks.shutdown.clone(),
    }
    .start(
        &tasks.tracker,
        config.journal.clone(),
        (
            config.sinks.keys().cloned().collect(),
            config.retention.clone(),
        ),
    );
}

/// Binds the public listener and, when configured, the control listener, each with its routes.
async fn start_http(
    config: &Config,
    state: AppState,
) -> anyhow::Result<(Vec<(TcpListener, Router)>, SocketAddr, SocketAddr)> {
    let listener = http::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let local_addr = listener.local_addr()?;
    let Some(addr) = config.server.control_listen else {
        return Ok((
            vec![(listener, http::router(state))],
            local_addr,
            local_addr,
        ));
    };
    let control = http::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let control_addr = control.local_addr()?;
    let listeners = vec![
        (listener, http::public_router(state.clone())),
        (control, http::private_router(state)),
    ];
    Ok((listeners, local_addr, control_addr))
}

/// Prunes idle clients from the rate limiters in force, every minute until shutdown.
async fn prune_rate_limits(live: LiveHandle, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        live.current().rate_limits.prune();
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
async fn watch_storage(store: Store, state: crate::config::StateConfig, tasks: Tasks) {
    let Tasks {
        shutdown, restart, ..
    } = tasks;
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
    tasks: &Tasks,
    (opened, journal): (&Opened, &journal::JournalHandle),
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
            store: opened.store.clone(),
            blobs: opened.blobs.clone(),
            journal: journal.clone(),
            registry: registry.clone(),
        };
        tasks
            .tracker
            .spawn(imap::run(mailbox, tasks.shutdown.clone()));
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
