//! Plain types that flow through the pipeline: what a channel adapter hands to the journal,
//! what the journal records, and where the processor stands.
//!
//! Nothing here imports another deskgate module, so every stage can depend on it.
//! - `inbound`: a customer message as its adapter normalised it ([`Inbound`], [`Identity`]).
//! - `record`: the journal's [`Record`] and its [`DedupeKey`]; non-message items.
//! - `outbound`, `control`, `sinks`: the other records (sends, control API requests,
//!   sinks' reports).
//! - `contact`: the [`Contact`] record that events show and the stages share.
//! - `outcome`: what a control record came to ([`ControlOutcome`], [`Refusal`]).
//! - `cursor`: the processor's [`Position`] and the records it set aside ([`Quarantined`]).
//! - `ticket`: the [`Ticket`] record (with its [`Routing`]) that the stages share.

mod contact;
mod control;
mod cursor;
mod inbound;
mod outbound;
mod outcome;
mod record;
mod sinks;
mod ticket;

pub use contact::*;
pub use control::*;
pub use cursor::*;
pub use inbound::*;
pub use outbound::*;
pub use outcome::*;
pub use record::*;
pub use sinks::*;
pub use ticket::*;
