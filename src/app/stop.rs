//! Ordered shutdown: stop accepting and let in-flight requests finish, then the sender, the
//! journal writer, the processor and every other task, all before one deadline.

use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use super::{Pipeline, Tasks};
use crate::http;
use crate::store::Store;

/// What shutdown stops, in order.
pub(super) struct Stopping {
    pub(super) listeners: Vec<(TcpListener, Router)>,
    pub(super) pipeline: Pipeline,
    pub(super) sender: tokio::task::JoinHandle<()>,
    pub(super) tasks: Tasks,
    pub(super) store: Store,
    pub(super) server: crate::config::ServerConfig,
}

/// Serves until shutdown begins, then stops everything in order before one deadline, the
/// grace period after the signal.
pub(super) async fn stop_in_order(stopping: Stopping) {
    let Stopping {
        listeners,
        pipeline,
        mut sender,
        tasks,
        store,
        server,
    } = stopping;
    let servers = listeners
        .into_iter()
        .map(|(listener, router)| http::serve(listener, router, tasks.shutdown.clone(), &server));
    let mut servers = std::pin::pin!(futures::future::join_all(servers));
    // One deadline for the whole stop, from the moment it begins: each stage gets what the
    // ones before it left, so that the stop fits in `shutdown_grace_secs` (and in the unit's
    // TimeoutStopSec) however many stages are slow.
    let servers_done = tokio::select! {
        _ = &mut servers => true,
        () = tasks.shutdown.cancelled() => false,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(server.shutdown_grace_secs);
    // A finished join must not be polled again.
    if !servers_done && tokio::time::timeout_at(deadline, servers).await.is_err() {
        tracing::warn!("connections still open at the shutdown deadline; closing them");
    }
    // The routers (and every journal handle in them) are gone with the servers: the writer
    // drains its queue, flushes, and stops; the processor then catches up.
    if tokio::time::timeout_at(deadline, &mut sender)
        .await
        .is_err()
    {
        // An unfinished send is retried at the next start; its journal handle must go.
        tracing::warn!("outbound sender still busy after the grace period; stopping it");
        sender.abort();
    }
    let Pipeline {
        journal,
        writer,
        processor,
        ..
    } = pipeline;
    drop(journal);
    let writer_done = tokio::task::spawn_blocking(move || writer.join());
    if tokio::time::timeout_at(deadline, writer_done)
        .await
        .is_err()
    {
        tracing::warn!("journal writer still busy after the grace period");
    }
    let processor_done = tokio::task::spawn_blocking(move || processor.join());
    if tokio::time::timeout_at(deadline, processor_done)
        .await
        .is_err()
    {
        tracing::warn!("processor still busy after the grace period; the journal keeps the rest");
    }
    tasks.tracker.close();
    if tokio::time::timeout_at(deadline, tasks.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks still running after the grace period");
    }
    if let Err(error) = store.flush() {
        tracing::error!(%error, "final flush failed");
    }
    tracing::info!("deskgate stopped");
}
