//! One connected session of a mailbox task: where to start, fetching in batches, journaling,
//! the checkpoint, the server-side action, and waiting (IDLE or polling) for more.

use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::conn::{self, timed, MailboxError, Session};
use super::ingest::{JournalOutcome, Journaler};
use super::status::ConnectionState;
use super::Mailbox;
use crate::backoff::Retries;
use crate::config::imap::{AfterIngest, InitialSync};
use crate::store::MailboxCheckpoint;

/// What the server offers that changes how we work.
struct Capabilities {
    idle: bool,
    r#move: bool,
    uidplus: bool,
}

pub(super) struct Task {
    m: Mailbox,
    journaler: Journaler,
    limit: Duration,
}

/// A batch fetched and handed to the journal, not yet checkpointed.
struct Pending {
    set: String,
    last: u32,
    count: usize,
    task: tokio::task::JoinHandle<JournalOutcome>,
}

struct Progress {
    done: usize,
    total: usize,
}

impl Task {
    pub(super) fn new(mailbox: Mailbox) -> Task {
        let limit = mailbox.config.command_timeout();
        let journaler = Journaler {
            channel: mailbox.channel.clone(),
            folder: mailbox.config.folder.clone(),
            email: mailbox.email.clone(),
            blobs: mailbox.blobs.clone(),
            journal: mailbox.journal.clone(),
        };
        Task {
            m: mailbox,
            journaler,
            limit,
        }
    }

    /// Connects and keeps the folder synced until an error (or shutdown, which returns Ok).
    pub(super) async fn connected(
        &mut self,
        shutdown: &CancellationToken,
        backoff: &mut Retries,
    ) -> Result<(), MailboxError> {
        let mut session = conn::open(&self.m.config).await?;
        let caps = timed(self.limit, "CAPABILITY", session.capabilities()).await?;
        let caps = Capabilities {
            idle: caps.has_str("IDLE"),
            r#move: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
        };
        let folder = self.m.config.folder.clone();
        let selected = timed(self.limit, "SELECT", session.select(&folder)).await?;
        let uid_validity = selected.uid_validity.ok_or_else(|| {
            MailboxError::Protocol(format!("SELECT {folder} returned no UIDVALIDITY"))
        })?;
        let mut checkpoint = self
            .start_point(&mut session, uid_validity, selected.uid_next)
            .await?;
        tracing::info!(channel = %self.m.channel, folder = %folder, uid_validity,
            last_uid = checkpoint.last_uid, idle = caps.idle, "IMAP mailbox connected");
        self.reconcile_action(&mut session, &checkpoint, &caps)
            .await?;
        loop {
            self.set_state(ConnectionState::Syncing);
            self.sync_new(&mut session, &mut checkpoint, &caps).await?;
            backoff.reset();
            self.synced(&checkpoint);
            // Unsolicited responses are not needed (every wake-up fetches from the checkpoint);
            // drain them so the library's channel never fills.
            while session.unsolicited_responses.try_recv().is_ok() {}
            let waited = if caps.idle {
                self.set_state(ConnectionState::Idle);
                self.idle(session, shutdown).await?
            } else {
                self.set_state(ConnectionState::Polling);
                self.poll(session, shutdown).await?
            };
            match waited {
                Some(next) => session = next,
                None => return Ok(()),
            }
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.m.registry.set_state(&self.m.channel, state);
    }

    fn synced(&self, checkpoint: &MailboxCheckpoint) {
        let now = Utc::now();
        self.m.registry.update(&self.m.channel, |status| {
            status.last_sync = Some(now);
            status.last_uid = Some(checkpoint.last_uid);
        });
        metrics::gauge!("deskgate_imap_last_sync_timestamp_seconds", "channel" => self.m.channel.clone())
            .set(now.timestamp() as f64);
    }

    /// The checkpoint to continue from: the stored one, or a new one from `initial_sync` (first
    /// connect) or for a resync (UIDVALIDITY changed, so every stored UID is meaningless).
    async fn start_point(
        &self,
        session: &mut Session,
        uid_validity: u32,
        uid_next: Option<u32>,
    ) -> Result<MailboxCheckpoint, MailboxError> {
        let (channel, folder) = (&self.m.channel, &self.m.config.folder);
        let stored = self.m.store.mailbox_checkpoint(channel, folder)?;
        if let Some(stored) = stored.filter(|s| s.uid_validity == uid_validity) {
            return Ok(stored);
        }
        let initial = &self.m.config.initial_sync;
        let start = match (stored, initial) {
            (Some(old), _) => {
                tracing::warn!(channel = %channel, folder = %folder, old = old.uid_validity,
                    new = uid_validity, "UIDVALIDITY changed: resyncing the folder; mail already \
                    journaled is recognised by its Message-ID");
                metrics::counter!("deskgate_imap_resyncs_total", "channel" => channel.clone())
                    .increment(1);
                match initial {
                    InitialSync::Since(day) => self.uid_before_day(session, *day, uid_next).await?,
                    InitialSync::New | InitialSync::All => 0,
                }
            }
            (None, InitialSync::All) => 0,
            (None, InitialSync::New) => self.newest_uid(session, uid_next).await?,
            (None, InitialSync::Since(day)) => self.uid_before_day(session, *day, uid_next).await?,
        };
        let import_upto = match initial {
            InitialSync::New => start,
            InitialSync::All | InitialSync::Since(_) => self.newest_uid(session, uid_next).await?,
        };
        let checkpoint = MailboxCheckpoint {
            uid_validity,
            last_uid: start,
            first_uid: start,
            import_upto,
        };
        self.m
            .store
            .set_mailbox_checkpoint(channel, folder, checkpoint)?;
        // Unlike later checkpoints this one is flushed: the start point must not move if we
        // crash before the first journal flush.
        self.m.store.flush()?;
        tracing::info!(channel = %channel, folder = %folder, start_after_uid = start,
            "IMAP mailbox sync starting point set");
        Ok(checkpoint)
    }

    /// The highest UID in the folder now (UIDNEXT - 1 when the server told it).
    async fn newest_uid(
        &self,
        session: &mut Session,
        uid_next: Option<u32>,
    ) -> Result<u32, MailboxError> {
        if let Some(next) = uid_next {
            return Ok(next.saturating_sub(1));
        }
        let all = timed(self.limit, "UID SEARCH", session.uid_search("ALL")).await?;
        Ok(all.into_iter().max().unwrap_or(0))
    }

    /// The UID just before the first mail received on or after `day`.
    async fn uid_before_day(
        &self,
        session: &mut Session,
        day: chrono::NaiveDate,
        uid_next: Option<u32>,
    ) -> Result<u32, MailboxError> {
        let query = format!("SINCE {}", day.format("%-d-%b-%Y"));
        let found = timed(self.limit, "UID SEARCH", session.uid_search(&query)).await?;
        match found.into_iter().min() {
            Some(first) => Ok(first.saturating_sub(1)),
            None => self.newest_uid(session, uid_next).await,
        }
    }

    /// Fetches, journals and checkpoints every mail after the checkpoint, in batches. While
    /// one batch is being parsed and journaled, the next is fetched.
    async fn sync_new(
        &self,
        session: &mut Session,
        checkpoint: &mut MailboxCheckpoint,
        caps: &Capabilities,
    ) -> Result<(), MailboxError> {
        let from = checkpoint.last_uid.saturating_add(1);
        let query = format!("UID {from}:*");
        let found = timed(self.limit, "UID SEARCH", session.uid_search(&query)).await?;
        // `n:*` always matches the newest mail even when its UID is below n.
        let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid >= from).collect();
        uids.sort_unstable();
        let mut progress = Progress {
            done: 0,
            total: uids.len(),
        };
        let mut pending: Option<Pending> = None;
        for chunk in uids.chunks(self.m.config.batch_size as usize) {
            let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
            let set = format!("{first}:{last}");
            let mails = self.fetch(session, &set).await?;
            if let Some(batch) = pending.take() {
                self.complete(session, checkpoint, batch, caps, &mut progress)
                    .await?;
            }
            pending = Some(Pending {
                set,
                last,
                count: chunk.len(),
                task: tokio::spawn(self.journaler.clone().journal(*checkpoint, mails)),
            });
        }
        if let Some(batch) = pending.take() {
            self.complete(session, checkpoint, batch, caps, &mut progress)
                .await?;
        }
        Ok(())
    }

    /// Waits for a batch's journal appends, then advances the checkpoint and applies
    /// `after_ingest`, in that order.
    async fn complete(
        &self,
        session: &mut Session,
        checkpoint: &mut MailboxCheckpoint,
        batch: Pending,
        caps: &Capabilities,
        progress: &mut Progress,
    ) -> Result<(), MailboxError> {
        let outcome = batch
            .task
            .await
            .map_err(|e| MailboxError::Protocol(format!("journaling a batch failed: {e}")))?;
        if let Err(error) = outcome.result {
            if let Some(uid) = outcome.journaled_through {
                checkpoint.last_uid = checkpoint.last_uid.max(uid);
                self.save(checkpoint)?;
            }
            return Err(error);
        }
        // Mail expunged between SEARCH and FETCH leaves a gap that is simply passed.
        checkpoint.last_uid = batch.last;
        self.save(checkpoint)?;
        self.after_ingest(session, &batch.set, caps).await?;
        progress.done += batch.count;
        if progress.total > batch.count {
            tracing::info!(channel = %self.m.channel, "synced {}/{}", progress.done, progress.total);
        }
        Ok(())
    }

    /// `UID FETCH set (UID BODY.PEEK[])`, read to its end, each response under the timeout.
    async fn fetch(
        &self,
        session: &mut Session,
        set: &str,
    ) -> Result<Vec<(u32, Vec<u8>)>, MailboxError> {
        let mut stream = timed(
            self.limit,
            "UID FETCH",
            session.uid_fetch(set, "(UID BODY.PEEK[])"),
        )
        .await?;
        let mut mails = Vec::new();
        loop {
            let next = tokio::time::timeout(self.limit, stream.next())
                .await
                .map_err(|_| MailboxError::Timeout("UID FETCH"))?;
            let fetch = match next {
                None => break,
                Some(Err(source)) => {
                    return Err(MailboxError::Imap {
                        what: "UID FETCH",
                        source,
                    })
                }
                Some(Ok(fetch)) => fetch,
            };
            // Flag updates for other mail can arrive in between: only bodies count.
            if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                mails.push((uid, body.to_vec()));
            }
        }
        mails.sort_unstable_by_key(|(uid, _)| *uid);
        metrics::counter!("deskgate_imap_fetched_total", "channel" => self.m.channel.clone())
            .increment(mails.len() as u64);
        Ok(mails)
    }

    fn save(&self, checkpoint: &MailboxCheckpoint) -> Result<(), MailboxError> {
        self.m
            .store
            .set_mailbox_checkpoint(&self.m.channel, &self.m.config.folder, *checkpoint)?;
        Ok(())
    }

    /// Applies `after_ingest` on the server to mail already journaled and checkpointed.
    async fn after_ingest(
        &self,
        session: &mut Session,
        set: &str,
        caps: &Capabilities,
    ) -> Result<(), MailboxError> {
        match &self.m.config.after_ingest {
            AfterIngest::Leave => Ok(()),
            AfterIngest::MarkSeen => {
                self.store_flags(session, set, "+FLAGS.SILENT (\\Seen)")
                    .await
            }
            AfterIngest::MoveTo(target) if caps.r#move => {
                timed(self.limit, "UID MOVE", session.uid_mv(set, target)).await
            }
            AfterIngest::MoveTo(target) => {
                timed(self.limit, "UID COPY", session.uid_copy(set, target)).await?;
                self.store_flags(session, set, "+FLAGS.SILENT (\\Deleted)")
                    .await?;
                if caps.uidplus {
                    let expunged =
                        timed(self.limit, "UID EXPUNGE", session.uid_expunge(set)).await?;
                    drain(self.limit, "UID EXPUNGE", expunged).await
                } else {
                    let expunged = timed(self.limit, "EXPUNGE", session.expunge()).await?;
                    drain(self.limit, "EXPUNGE", expunged).await
                }
            }
        }
    }

    async fn store_flags(
        &self,
        session: &mut Session,
        set: &str,
        change: &str,
    ) -> Result<(), MailboxError> {
        let updates = timed(self.limit, "UID STORE", session.uid_store(set, change)).await?;
        drain(self.limit, "UID STORE", updates).await
    }

    /// On connect, applies `after_ingest` again to everything deskgate journaled: a crash
    /// between a checkpoint and its server-side action would otherwise leave that mail behind.
    async fn reconcile_action(
        &self,
        session: &mut Session,
        checkpoint: &MailboxCheckpoint,
        caps: &Capabilities,
    ) -> Result<(), MailboxError> {
        if self.m.config.after_ingest == AfterIngest::Leave
            || checkpoint.last_uid <= checkpoint.first_uid
        {
            return Ok(());
        }
        let set = format!("{}:{}", checkpoint.first_uid + 1, checkpoint.last_uid);
        let present = timed(
            self.limit,
            "UID SEARCH",
            session.uid_search(format!("UID {set}")),
        )
        .await?;
        if present
            .iter()
            .any(|uid| (checkpoint.first_uid + 1..=checkpoint.last_uid).contains(uid))
        {
            self.after_ingest(session, &set, caps).await?;
        }
        Ok(())
    }

    /// Waits in IDLE until the server reports a change, `idle_renew_secs` pass, or shutdown
    /// (`None`). A dropped connection ends the wait like an interrupt; DONE then fails.
    async fn idle(
        &self,
        session: Session,
        shutdown: &CancellationToken,
    ) -> Result<Option<Session>, MailboxError> {
        let mut handle = session.idle();
        timed(self.limit, "IDLE", handle.init()).await?;
        let renew = Duration::from_secs(self.m.config.idle_renew_secs);
        let woke = {
            // The library's own timeout restarts at every keepalive (`* OK Still here`), so
            // the renewal deadline is kept here.
            let (wait, _stop) = handle.wait_with_timeout(renew);
            tokio::select! {
                woke = wait => Some(woke),
                () = tokio::time::sleep(renew) => Some(Ok(IdleResponse::Timeout)),
                () = shutdown.cancelled() => None,
            }
        };
        match woke {
            None => return Ok(None),
            Some(Err(source)) => {
                return Err(MailboxError::Imap {
                    what: "IDLE",
                    source,
                })
            }
            Some(Ok(response)) => {
                tracing::debug!(channel = %self.m.channel, ?response, "IMAP IDLE woke");
            }
        }
        let session = timed(self.limit, "DONE", handle.done()).await?;
        Ok(Some(session))
    }

    /// Without IDLE: wait one poll interval (or shutdown: `None`), then check the connection.
    async fn poll(
        &self,
        mut session: Session,
        shutdown: &CancellationToken,
    ) -> Result<Option<Session>, MailboxError> {
        let interval = Duration::from_secs(self.m.config.poll_interval_secs);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
        timed(self.limit, "NOOP", session.noop()).await?;
        Ok(Some(session))
    }
}

/// Reads a response stream to its end, so the next command starts on a clean connection.
async fn drain<T>(
    limit: Duration,
    what: &'static str,
    stream: impl futures::Stream<Item = Result<T, async_imap::error::Error>>,
) -> Result<(), MailboxError> {
    let mut stream = std::pin::pin!(stream);
    loop {
        match tokio::time::timeout(limit, stream.next()).await {
            Err(_) => return Err(MailboxError::Timeout(what)),
            Ok(None) => return Ok(()),
            Ok(Some(Err(source))) => return Err(MailboxError::Imap { what, source }),
            Ok(Some(Ok(_))) => {}
        }
    }
}
