//! What each mailbox task is doing, for `/readyz` and operators: connection state, the last
//! successful sync, the last error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Connecting,
    Syncing,
    /// Connected and waiting in IDLE for new mail.
    Idle,
    /// Connected, polling on a timer (the server has no IDLE).
    Polling,
    /// Waiting to reconnect after a transient error.
    Backoff,
    /// The server refused the login; retried slowly.
    AuthFailed,
    Stopped,
}

impl ConnectionState {
    /// Connected to the server (syncing or waiting for mail).
    pub fn is_connected(self) -> bool {
        matches!(self, Self::Syncing | Self::Idle | Self::Polling)
    }

    /// Unable to reach or log in to the server: readiness reports the mailbox.
    pub fn is_down(self) -> bool {
        matches!(self, Self::Backoff | Self::AuthFailed)
    }
}

/// One mailbox's state as reported.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxStatus {
    pub folder: String,
    pub state: ConnectionState,
    /// When the folder was last fully synced (every mail up to the server's newest journaled).
    pub last_sync: Option<DateTime<Utc>>,
    /// The highest UID journaled.
    pub last_uid: Option<u32>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// Every mailbox task's status, by channel id. Cheap to clone.
#[derive(Clone, Default)]
pub struct MailboxRegistry {
    inner: Arc<Mutex<BTreeMap<String, MailboxStatus>>>,
}

impl MailboxRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, MailboxStatus>> {
        // A panic while holding this lock leaves only status fields half-updated: keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register(&self, channel: &str, folder: &str) {
        self.lock().insert(
            channel.to_owned(),
            MailboxStatus {
                folder: folder.to_owned(),
                state: ConnectionState::Connecting,
                last_sync: None,
                last_uid: None,
                last_error: None,
                last_error_at: None,
            },
        );
    }

    pub fn update(&self, channel: &str, change: impl FnOnce(&mut MailboxStatus)) {
        if let Some(status) = self.lock().get_mut(channel) {
            change(status);
        }
    }

    pub fn set_state(&self, channel: &str, state: ConnectionState) {
        self.update(channel, |status| status.state = state);
    }

    /// A copy of every mailbox's status.
    pub fn snapshot(&self) -> BTreeMap<String, MailboxStatus> {
        self.lock().clone()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}
