//! The HTTP server: hyper with HTTP/1 and HTTP/2, a header-read timeout against slow clients,
//! and graceful shutdown that stops accepting and lets in-flight requests finish.

mod availability;
mod backup_control;
mod body;
mod contacts;
mod control;
mod error;
mod events;
mod health;
mod hooks;
mod journaled;
mod mail_control;
mod openapi;
mod outbound;
pub mod ratelimit;
mod routes;
mod tickets;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use control::Tokens;
pub use error::ApiError;
pub use routes::{private_router, public_router, router, AppState, Shared};

use crate::config::ServerConfig;

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits up to the grace
/// period for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    config: &ServerConfig,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // hyper panics on a header-read timeout without a timer.
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_read_timeout_secs));
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request)
            },
        );
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = config.shutdown_grace_secs,
            "connections still open after the grace period"
        );
    }
}

/// Binds the listener, refusing to start when the address is taken.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
