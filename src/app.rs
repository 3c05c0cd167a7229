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

use crate::config::Config;
use crate::events::sinks::{self, SinkContext};
use crate::events::{OutboxReader, OutboxWriter};
use crate::http::{self, AppState};
use crate::ids::Minter;
use crate::journal;
use crate::processor::{self, Processor};
use crate::store::{keys, Blobs, Store};

/// A started daemon.
pub struct App {
    /// The address the HTTP listener is bound to (useful when the config asks for port 0).
    pub local_addr: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl App {
    /// Opens the state and starts every task; returns once the listener is bound.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        let dir = config.state.dir.clone();
        let store = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating state directory {}", dir.display()))?;
            let store =
                Store::open(&dir).with_context(|| format!("opening state in {}", dir.display()))?;
            let instance_id = instance_id(&store)?;
            let blobs =
                Blobs::open(&dir).with_context(|| format!("opening blobs in {}", dir.display()))?;
            anyhow::Ok((store, blobs, instance_id))
        })
        .await?;
        let (store, blobs, instance_id) = store?;

        let minter = Minter::new(instance_id);
        let outbox = OutboxWriter::new(config.events.instance.clone(), instance_id);
        let processor = Arc::new(Processor::new(
            store.clone(),
            minter,
            outbox,
            config.events.processor_batch,
        ));
        let position = processor
            .position()
            .context("reading the processor's position")?;
        let (journal, writer) =
            journal::start(store.clone(), &config.journal).context("starting the journal")?;
        let (position_tx, position_rx) = watch::channel(position);

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(processor::run(processor, journal.durable(), position_tx));

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
        let state = AppState {
            tokens: http::Tokens::new(tokens),
            store: store.clone(),
            blobs,
            channels: Arc::new(config.channels.clone()),
            journal,
            outbox: OutboxReader::new(store.clone(), position_rx.clone()),
            position: position_rx,
            events: Arc::new(config.events.clone()),
            shutdown: shutdown.clone(),
            sinks,
        };
        let listener = http::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let local_addr = listener.local_addr()?;
        tracing::info!(addr = %local_addr, processor_cursor = position.cursor, "deskgate listening");

        let router = http::router(state);
        let server_shutdown = shutdown.clone();
        let server_config = config.server.clone();
        let done = tokio::spawn(async move {
            http::serve(listener, router, server_shutdown, &server_config).await;
            // The router (and every journal handle in it) is gone with the server: the writer
            // drains its queue, flushes, and stops; the processor then catches up and stops.
            let grace = Duration::from_secs(server_config.shutdown_grace_secs);
            let writer_done = tokio::task::spawn_blocking(move || writer.join());
            if tokio::time::timeout(grace, writer_done).await.is_err() {
                tracing::warn!("journal writer still busy after the grace period");
            }
            tracker.close();
            if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
                tracing::warn!(
                    "processor still busy after the grace period; the journal keeps the rest"
                );
            }
            if let Err(error) = store.flush() {
                tracing::error!(%error, "final flush failed");
            }
            tracing::info!("deskgate stopped");
        });
        Ok(App {
            local_addr,
            shutdown,
            done,
        })
    }

    /// A token that begins shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown has finished.
    pub async fn wait(self) {
        if let Err(error) = self.done.await {
            tracing::error!(%error, "shutdown task failed");
        }
    }
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
