//! deskgate: a channel gateway in front of a help desk's ticket store.
//!
//! Messages arrive on channels, are journaled durably, then applied in order by one processor
//! that recognises the contact, threads the message into a conversation and ticket, and emits
//! CloudEvents to an outbox that the ticket store reads.
//!
//! Module map, from the ground up: a module imports its own layer and those below it, never
//! one above (the layer table and its test are in `src/architecture.rs`).
//! - [`model`], [`config`]: plain types (inbound messages, journal records, control outcomes and
//!   refusals, the processor's position, the ticket and contact records the stages share) and
//!   configuration; they import nothing of ours.
//! - The ground floor: [`store`] (the embedded database, fjall: keyspaces, keys, codec, atomic
//!   batches, fsync); [`ids`] (ids derived from the journal); [`identity`] (normalising emails,
//!   phones with the configured region, channel-scoped ids); [`message_id`] (Message-ID rules
//!   and deskgate's own); [`backoff`] (the one jittered backoff); [`ratelimit`] (the public
//!   channels' per-client limits).
//! - The stages of applying one record: [`contacts`], [`conversations`], [`tickets`] (a ticket's
//!   pipeline, status and owner; triggers, control commands), [`routing`] (the assignment
//!   decision, the rules compiled from config, the directory they decide over), [`events`]
//!   (event types, data, the outbox, and the `deskgate.sink.*` notices), [`outbound`]
//!   (planning what deskgate sends), [`delivery`] (non-message items: delivery statuses,
//!   platform notices). Among them imports go one way, never around a circle: `events` imports
//!   no stage; `contacts` and `outbound` import `conversations`; `tickets`, which runs a
//!   ticket's life (routing it, forgetting its conversations with what outbound kept for
//!   them), imports the rest.
//! - [`processor`]: applies journaled records in order, committing effects with its cursor;
//!   [`live`]: what a SIGHUP replaces (rules, sending plan, rate limits), read once per step
//!   and per request.
//! - [`journal`]: the single writer that makes every input durable before it is acknowledged.
//! - What journals: [`channels`] (adapters from each channel's raw input to
//!   [`model::Inbound`]), the event sinks (`events::sinks`) and the outbound sender
//!   (`outbound::sender`, with its transports).
//! - Above the pipeline: [`http`] (the server, routes, and the one place errors become
//!   responses), [`housekeeping`] (journal and outbox retention, the blob sweep), [`backup`] (a
//!   consistent copy of the state, taken while the daemon runs), [`telemetry`] (logs, metrics).
//! - [`allocator`]: jemalloc, the binaries' global allocator.
//! - [`app`]: builds and owns every task; start-up and ordered shutdown. [`cli`]: the commands
//!   that talk to a running daemon or read a state directory.

pub mod allocator;
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
