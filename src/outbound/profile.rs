//! The Messenger pages' greeting (the welcome screen's text), set from config through the
//! Messenger Profile API when deskgate starts and again on each reload that changes it, and
//! removed when the config drops it. It is configuration, not a message: nothing is journaled
//! (a restart sets it again); a transient failure is retried with backoff until it passes or
//! the config changes again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::graph::Graph;
use super::sender::Failure;
use crate::backoff::Backoff;
use crate::config::OutboundConfig;

/// Retries of one page's greeting after a transient failure.
const ATTEMPTS: u32 = 8;

/// What Meta has been told, per page (`None`: the greeting was removed); a page missing here
/// has not been set by this process.
type Applied = Arc<Mutex<BTreeMap<String, Option<String>>>>;

/// Keeps the pages' greetings in line with the config. One task at a time: a reload cancels
/// the one still retrying and starts from what was applied.
pub struct Greetings {
    applied: Applied,
    running: Option<CancellationToken>,
    shutdown: CancellationToken,
}

impl Greetings {
    pub fn new(shutdown: CancellationToken) -> Greetings {
        Greetings {
            applied: Applied::default(),
            running: None,
            shutdown,
        }
    }

    /// Sets, in the background, every greeting of `config` that Meta has not been given by
    /// this process, and removes those the config dropped.
    pub fn apply(&mut self, config: &OutboundConfig) {
        if let Some(running) = self.running.take() {
            running.cancel();
        }
        let changes = {
            let applied = self.applied.lock().expect("no panics while held");
            let mut changes = BTreeMap::new();
            for (channel, page) in &config.messenger {
                if applied.get(channel) != Some(&page.greeting)
                    && (page.greeting.is_some() || applied.contains_key(channel))
                {
                    changes.insert(channel.clone(), page.greeting.clone());
                }
            }
            changes
        };
        if changes.is_empty() {
            return;
        }
        let graph = match Graph::new(config) {
            Ok(graph) => graph,
            Err(error) => {
                tracing::error!(%error, "the Messenger greetings were not set");
                return;
            }
        };
        let cancel = self.shutdown.child_token();
        self.running = Some(cancel.clone());
        let applied = Arc::clone(&self.applied);
        tokio::spawn(async move {
            for (channel, greeting) in changes {
                let done = tokio::select! {
                    done = set(&graph, &channel, greeting.as_deref()) => done,
                    () = cancel.cancelled() => return,
                };
                if done {
                    let mut applied = applied.lock().expect("no panics while held");
                    applied.insert(channel, greeting);
                }
            }
        });
    }
}

/// Sets one page's greeting, retrying transient failures; whether it was set.
async fn set(graph: &Graph, channel: &str, greeting: Option<&str>) -> bool {
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    for attempt in 1..=ATTEMPTS {
        match graph.set_greeting(channel, greeting).await {
            Ok(()) => {
                let what = if greeting.is_some() { "set" } else { "removed" };
                tracing::info!(channel, "Messenger greeting {what}");
                return true;
            }
            Err(Failure::Transient(error)) if attempt < ATTEMPTS => {
                tracing::warn!(channel, %error, attempt, "setting the Messenger greeting failed; retrying");
                tokio::time::sleep(backoff.delay(attempt)).await;
            }
            Err(Failure::Transient(error) | Failure::Permanent(error))
            | Err(Failure::Refused { error, .. }) => {
                tracing::error!(channel, %error, "the Messenger greeting was not set");
                return false;
            }
        }
    }
    false
}
