//! Where the processor stands in the journal and the outbox, and the records it set aside:
//! plain values the journal's retention, the outbox readers and the sinks read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where the processor stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The last journal record applied.
    pub cursor: u64,
    /// The last event sequenced.
    pub outbox: u64,
}

/// A record the processor set aside, kept with the reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quarantined {
    pub journal_seq: u64,
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub reason: String,
    /// The blob with the raw input, when the channel kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_blob: Option<String>,
    pub at: DateTime<Utc>,
    /// The journal seq of the message a retry turned this input into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_as: Option<u64>,
}
