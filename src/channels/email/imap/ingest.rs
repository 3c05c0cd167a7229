//! Turning a fetched batch into journal records: parse each mail with the one email entry
//! point, then append them all at once so that they share the journal's group commits, and
//! in UID order: each append joins the journal's queue at its first poll, and the appends are
//! first polled in UID order ([`join_in_order`]) whatever the batch size. (`join_all` of more
//! than a few dozen futures polls them in no set order, so a large batch was journaled out of
//! order and replies could open tickets before their thread's first mail.)

use chrono::Utc;

use super::conn::MailboxError;
use crate::channels::email::{to_record_with, MailboxRef};
use crate::config::EmailConfig;
use crate::journal::{Appended, JournalHandle};
use crate::model::Record;
use crate::store::{Blobs, MailboxCheckpoint};

/// What a mailbox task needs to journal mail; cheap to clone into a spawned task.
#[derive(Clone)]
pub(super) struct Journaler {
    pub channel: String,
    pub folder: String,
    pub email: EmailConfig,
    pub blobs: Blobs,
    pub journal: JournalHandle,
}

/// How far a batch got.
pub(super) struct JournalOutcome {
    /// The highest UID of the run of mails, from the batch's start, that the journal
    /// confirmed: on a failure the checkpoint may advance this far.
    pub journaled_through: Option<u32>,
    pub result: Result<(), MailboxError>,
}

impl Journaler {
    /// Journals `(uid, raw)` mails sorted by UID; returns once every append has answered. Mail
    /// up to the checkpoint's `import_upto` was in the folder before deskgate synced it: it is
    /// journaled as imported (history).
    pub async fn journal(
        self,
        checkpoint: MailboxCheckpoint,
        mails: Vec<(u32, Vec<u8>)>,
    ) -> JournalOutcome {
        let uid_validity = checkpoint.uid_validity;
        let fail = |error: MailboxError| JournalOutcome {
            journaled_through: None,
            result: Err(error),
        };
        let Journaler {
            channel,
            folder,
            email,
            blobs,
            journal,
        } = self;
        let received_at = Utc::now();
        let parse_channel = channel.clone();
        // Parsing is CPU work: keep it off the async workers.
        let parsed = tokio::task::spawn_blocking(move || {
            mails
                .into_iter()
                .map(|(uid, raw)| {
                    let at = MailboxRef {
                        folder: folder.clone(),
                        uid_validity,
                        uid,
                    };
                    let mut record = to_record_with(
                        &parse_channel,
                        &raw,
                        received_at,
                        &blobs,
                        Some(&at),
                        &email,
                    )?;
                    if let (Record::Inbound(inbound), true) =
                        (&mut record, uid <= checkpoint.import_upto)
                    {
                        inbound.imported = Some(format!(
                            "already in folder {} (UID {uid}) when deskgate first synced it",
                            at.folder
                        ));
                    }
                    Ok((uid, record))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        let records = match parsed {
            Err(panic) => {
                return fail(MailboxError::Protocol(format!(
                    "parsing a batch failed: {panic}"
                )))
            }
            Ok(Err(error)) => return fail(MailboxError::Blobs(error)),
            Ok(Ok(records)) => records,
        };
        let appends = records.into_iter().map(|(uid, record)| {
            let journal = journal.clone();
            async move { (uid, journal.append(record).await) }
        });
        let (mut new, mut through) = (0u64, None);
        let mut result = Ok(());
        for (uid, appended) in join_in_order(appends.collect()).await {
            match appended {
                Ok(Appended::New { .. }) => new += 1,
                Ok(Appended::Duplicate { .. }) => {}
                Err(error) => {
                    result = Err(error.into());
                    break;
                }
            }
            through = Some(uid);
        }
        metrics::counter!("deskgate_inbound_total", "channel" => channel.clone(),
            "outcome" => "accepted")
        .increment(new);
        JournalOutcome {
            journaled_through: through,
            result,
        }
    }
}

/// Awaits every future, polling all of them in their order on every wake-up, so that each is
/// first polled after the ones before it. The journal's queue hands out places in the order
/// they are asked for (a full queue queues its waiters first come, first served; a task out
/// of its cooperative budget gets none and asks again, in the same order, on its next poll),
/// so the appends are journaled in this order.
async fn join_in_order<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::future::Future;
    use std::task::Poll;
    let mut futures: Vec<_> = futures
        .into_iter()
        .map(|f| Box::pin(futures::future::maybe_done(f)))
        .collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for future in futures.iter_mut() {
            pending |= future.as_mut().poll(cx).is_pending();
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    futures
        .iter_mut()
        .map(|future| {
            future
                .as_mut()
                .take_output()
                .expect("every future is done: poll_fn returned Ready only then")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Futures that each take a place in a bounded queue at their first poll and then wait for
    /// their answer, as journal appends do, far more than tokio's cooperative budget lets one
    /// poll serve, are placed in their order. (`join_all` placed 1,000 of them out of order.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn places_are_taken_in_order_whatever_the_count() {
        type Ask = (usize, tokio::sync::oneshot::Sender<()>);
        let (queue, mut receiver) = tokio::sync::mpsc::channel::<Ask>(256);
        // A writer thread that takes what is queued in batches and answers each, like the
        // journal's.
        let writer = std::thread::spawn(move || {
            let mut order = Vec::new();
            while let Some(first) = receiver.blocking_recv() {
                let mut batch = vec![first];
                while let Ok(more) = receiver.try_recv() {
                    batch.push(more);
                }
                for (n, answer) in batch {
                    order.push(n);
                    let _ = answer.send(());
                }
            }
            order
        });
        let asks = (0..1000).map(|n| {
            let queue = queue.clone();
            async move {
                let (answer, answered) = tokio::sync::oneshot::channel();
                queue.send((n, answer)).await.is_ok() && answered.await.is_ok()
            }
        });
        let answered = super::join_in_order(asks.collect()).await;
        assert!(answered.iter().all(|ok| *ok));
        drop(queue);
        let order = writer.join().unwrap();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
    }
}
