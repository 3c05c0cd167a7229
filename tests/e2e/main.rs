//! deskgate's end-to-end tests, as one test binary (the chaos run alone is another,
//! `tests/chaos.rs`, which says why): each module is a suite that starts the real
//! `deskgate` binary (or drives its library) against real peers through the test kit
//! (`crates/test-kit`). The suites run side by side in this one process, so nothing in them
//! may assume it runs alone: each test has its own temporary directories, mount points and
//! child processes, ports come from [`test_kit::free_port`] (never the same one twice in this
//! process), and no test changes the process's environment or working directory.
//!
//! Run one suite with `cargo test --test e2e <module>::`, e.g. `cargo test --test e2e ops::`.

mod api;
mod chat_availability;
mod chat_transcript;
mod contacts;
mod crash;
mod disk_full;
mod email_corpus;
mod email_imap;
mod email_index;
mod email_push;
mod email_split;
mod email_threading;
mod email_ticket_numbers;
mod hostile;
mod messaging_corpus;
mod messaging_meta;
mod messaging_web;
mod ops;
mod outbound_consent;
mod outbound_forward;
mod outbound_graph;
mod outbound_language;
mod outbound_policy;
mod outbound_smtp;
mod power_loss;
mod processor_pipeline;
mod readme;
mod reference_store;
mod routing_actions;
mod routing_config;
mod routing_decisions;
mod routing_e2e;
mod routing_owner;
mod routing_triggers;
mod semantics;
mod sinks_nats;
mod sinks_webhook;

// Helpers shared by several suites.
mod messaging_support;
mod outbound_support;
mod routing_support;
mod sinks_support;
