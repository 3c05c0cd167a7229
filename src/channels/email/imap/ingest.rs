//! Turning a fetched batch into journal records: parse each mail with the one email entry
//! point, then append them all at once so that they share the journal's group commits.

use chrono::Utc;

use super::conn::MailboxError;
use crate::channels::email::{to_record_with, MailboxRef};
use crate::config::EmailConfig;
use crate::journal::{Appended, JournalHandle};
use crate::store::Blobs;

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
    /// Journals `(uid, raw)` mails sorted by UID; returns once every append has answered.
    pub async fn journal(self, uid_validity: u32, mails: Vec<(u32, Vec<u8>)>) -> JournalOutcome {
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
                    to_record_with(&parse_channel, &raw, received_at, &blobs, Some(&at), &email)
                        .map(|record| (uid, record))
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
        for (uid, appended) in futures::future::join_all(appends).await {
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
