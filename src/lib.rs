//! deskgate: a channel gateway in front of a help desk's ticket store.
//!
//! Messages arrive on channels, are journaled durably, then applied in order by one processor
//! that recognises the contact, threads the message into a conversation and ticket, and emits
//! CloudEvents to an outbox that the ticket store reads.
//!
//! Module map, from the ground up (dependencies point down):
//! - [`model`], [`config`]: plain types and configuration; they import nothing of ours.
//! - [`store`]: the embedded database (fjall): keyspaces, keys, codec, atomic batches, fsync.
//! - [`journal`]: the single writer that makes every input durable before it is acknowledged.
//! - [`backoff`]: the jittered exponential backoff of every retry loop.
//! - [`routing`]: the assignment decision (pure) and the routing rules compiled from config.
//! - [`tickets`]: the ticket mirror's pipeline, status and owner; status triggers; control commands.
//! - [`ids`], [`contacts`], [`conversations`], [`events`]: the stages of processing one message;
//!   [`delivery`]: non-message items (delivery statuses, platform notices).
//! - [`live`]: what a SIGHUP replaces while running (routing rules, sending plan and templates,
//!   rate limits), read once per processor step and per request.
//! - [`processor`]: applies journaled records in order, committing effects with its cursor.
//! - [`outbound`]: what deskgate sends (acknowledgements, notifications, agents' replies over
//!   SMTP, the Graph API and chat events): planned in the processor, delivered by a sender task.
//! - [`channels`]: adapters from each channel's raw input to [`model::Inbound`].
//! - [`http`]: the server, routes and the one place errors become responses.
//! - [`app`]: builds and owns every task; start-up and ordered shutdown.
//! - [`backup`]: a consistent copy of the state, taken while the daemon runs.

pub mod app;
pub mod backoff;
pub mod backup;
pub mod channels;
pub mod cli;
pub mod config;
pub mod contacts;
pub mod conversations;
pub mod delivery;
pub mod events;
pub mod housekeeping;
pub mod http;
pub mod identity;
pub mod ids;
pub mod journal;
pub mod live;
pub mod message_id;
pub mod model;
pub mod outbound;
pub mod processor;
pub mod ratelimit;
pub mod routing;
pub mod store;
pub mod telemetry;
pub mod tickets;

#[cfg(test)]
mod architecture;
