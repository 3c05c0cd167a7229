//! Turning a fetched batch into journal records: parse each mail with the one email entry
//! point, then enqueue them one after another, so that they are journaled in UID order (a
//! reply never opens a ticket before its thread's first mail), and await the answers together,
//! so that the batch shares the journal's group commits.

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
        // Parsing is CPU work: keep it off the async workers.
        let parse_channel = channel.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            parse_batch(
                &parse_channel,
                &folder,
                (&email, &blobs),
                &checkpoint,
                mails,
            )
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
        let (new, through, result) = journal_in_order(&journal, records).await;
        metrics::counter!("deskgate_inbound_total", "channel" => channel.clone(),
            "outcome" => "accepted")
        .increment(new);
        JournalOutcome {
            journaled_through: through,
            result,
        }
    }
}

/// Parses each `(uid, raw)` mail of the batch into its record; mail up to the checkpoint's
/// `import_upto` is marked imported. Blocking.
fn parse_batch(
    channel: &str,
    folder: &str,
    (email, blobs): (&EmailConfig, &Blobs),
    checkpoint: &MailboxCheckpoint,
    mails: Vec<(u32, Vec<u8>)>,
) -> Result<Vec<(u32, Record)>, std::io::Error> {
    let received_at = Utc::now();
    mails
        .into_iter()
        .map(|(uid, raw)| {
            let at = MailboxRef {
                folder: folder.to_owned(),
                uid_validity: checkpoint.uid_validity,
                uid,
            };
            let mut record = to_record_with(channel, &raw, received_at, blobs, Some(&at), email)?;
            if let (Record::Inbound(inbound), true) = (&mut record, uid <= checkpoint.import_upto) {
                inbound.imported = Some(format!(
                    "already in folder {} (UID {uid}) when deskgate first synced it",
                    at.folder
                ));
            }
            Ok((uid, record))
        })
        .collect()
}

/// Enqueues `records` one after another, so journaled in UID order, and awaits the answers
/// together, so the batch shares the writer's group commits. Returns how many were new, the
/// highest UID of the confirmed run from the batch's start, and the first failure.
async fn journal_in_order(
    journal: &JournalHandle,
    records: Vec<(u32, Record)>,
) -> (u64, Option<u32>, Result<(), MailboxError>) {
    let mut enqueued = Vec::with_capacity(records.len());
    let mut refused = None;
    for (uid, record) in records {
        match journal.enqueue(record).await {
            Ok(pending) => enqueued.push((uid, pending)),
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let answers = enqueued
        .into_iter()
        .map(|(uid, pending)| async move { (uid, pending.answer().await) });
    let answered = futures::future::join_all(answers).await;
    let (mut new, mut through) = (0u64, None);
    let mut result = Ok(());
    let refused = refused.map(|error| (0, Err(error)));
    for (uid, appended) in answered.into_iter().chain(refused) {
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
    (new, through, result)
}
