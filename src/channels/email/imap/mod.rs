//! IMAP mailboxes: one task per `email` channel with an `[imap]` table pulls its folder into
//! the journal.
//!
//! A task's life: connect and log in, select the folder, work out where to start (the stored
//! checkpoint, or `initial_sync` on the first connect, or a resync when UIDVALIDITY changed),
//! fetch every newer UID in batches with `BODY.PEEK[]`, journal each mail, advance the
//! checkpoint, apply `after_ingest` on the server, then wait in IDLE (or poll) and repeat. Any
//! error drops the connection and reconnects after a jittered exponential backoff; a refused
//! login is retried slowly and reported as `auth_failed`.
//!
//! Nothing here trusts message counts: every wake-up fetches from the last journaled UID.

mod conn;
mod ingest;
mod status;
mod sync;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, Retries};
use crate::config::ImapConfig;
use crate::journal::JournalHandle;
use crate::store::{Blobs, Store};

pub use conn::MailboxError;
pub use status::{ConnectionState, MailboxRegistry, MailboxStatus};

/// Everything one mailbox task needs.
pub struct Mailbox {
    pub channel: String,
    pub config: ImapConfig,
    /// How this channel reads mail (forwards, size limit): the same options as its push hook.
    pub email: crate::config::EmailConfig,
    pub store: Store,
    pub blobs: Blobs,
    pub journal: JournalHandle,
    pub registry: MailboxRegistry,
}

/// Runs one mailbox until `shutdown` is cancelled. Dropping a sync half-way is safe: the
/// checkpoint only ever names mail already journaled, and re-fetched mail is deduplicated.
pub async fn run(mailbox: Mailbox, shutdown: CancellationToken) {
    let channel = mailbox.channel.clone();
    let registry = mailbox.registry.clone();
    registry.register(&channel, &mailbox.config.folder);
    let mut backoff = Retries::new(Backoff::new(
        Duration::from_millis(mailbox.config.backoff_min_ms),
        Duration::from_millis(mailbox.config.backoff_max_ms),
    ));
    let auth_retry = Duration::from_secs(mailbox.config.auth_retry_secs);
    let mut task = sync::Task::new(mailbox);
    loop {
        registry.set_state(&channel, ConnectionState::Connecting);
        let result = tokio::select! {
            result = task.connected(&shutdown, &mut backoff) => result,
            () = shutdown.cancelled() => Ok(()),
        };
        let Err(error) = result else { break };
        if shutdown.is_cancelled() {
            break;
        }
        metrics::counter!(
            "deskgate_imap_connection_errors_total",
            "channel" => channel.clone(),
            "kind" => error.kind()
        )
        .increment(1);
        let (state, delay) = if error.is_slow_retry() {
            let delay = Backoff::new(auth_retry, auth_retry).delay(1);
            tracing::error!(%error, channel = %channel, retry_in_secs = delay.as_secs(),
                "IMAP mailbox cannot log in; check the user and password file");
            (ConnectionState::AuthFailed, delay)
        } else {
            let delay = backoff.next_delay();
            tracing::warn!(%error, channel = %channel, kind = error.kind(),
                retry_in_ms = delay.as_millis() as u64, "IMAP mailbox connection failed");
            (ConnectionState::Backoff, delay)
        };
        registry.update(&channel, |status| {
            status.state = state;
            status.last_error = Some(format!("{}: {error}", error.kind()));
            status.last_error_at = Some(chrono::Utc::now());
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => break,
        }
    }
    registry.set_state(&channel, ConnectionState::Stopped);
    tracing::info!(channel = %channel, "IMAP mailbox stopped");
}
