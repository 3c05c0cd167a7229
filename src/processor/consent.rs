//! The GDPR consent gate of Messenger pages (`outbound.messenger.<channel>.consent`), applied to
//! every message after its sender is resolved and before it is threaded.
//!
//! - `off` (or a channel that is no Messenger page): the message passes.
//! - `implicit`: a contact without consent to the current text version gets it recorded as
//!   implicit (at the message's time) and the message passes with a notice: the consent text is
//!   sent before anything else deskgate answers (the instant reply). The page's own echoed
//!   messages pass without recording anything.
//! - `explicit`: a contact without consent to the current version is held: the message is kept
//!   (`consent_held/…`, exactly once: in the step that applies its journal record), opens no
//!   ticket, reaches no agent and starts no automatic reply. The page's own echoed messages
//!   wait with them. The first held message of the visitor is answered with the consent text
//!   and an agree quick reply; a tap on the button of an older text version is answered so
//!   again, and not kept. The tap on the current version's button records the consent
//!   (explicit, at the tap's time) and the held messages are applied in journal order, each
//!   with its own journal seq and received time (their events carry their original times), as
//!   if the gate had let them through when they came; the tap itself is the consent, not a
//!   message to the ticket.
//! - A contact who consented to an older version (the operator bumped `consent_version`) is
//!   treated as one without consent: asked again (explicit) or recorded again (implicit).
//!
//! Everything derives from the records and the step's config, so a replay decides the same.

use super::Processor;
use crate::config::outbound::ConsentMode;
use crate::contacts;
use crate::live::Live;
use crate::model::{Consent, ConsentKind, Contact, Inbound, MessageKind};
use crate::outbound::consent::{self as send, Target};
use crate::store::{StateBatch, StoreError};

/// What becomes of a message at the gate.
pub(super) enum Gate {
    /// Threaded now; `notice`: the consent was just recorded implicitly, send the text.
    Pass { notice: bool },
    /// Kept until the contact consents (or, a tap on an older text's button, answered with
    /// the current text and not kept).
    Held,
    /// The contact consented: these held messages (journal seq, message) go on, in order.
    Agreed(Vec<(u64, Inbound)>),
}

impl Processor {
    pub(super) fn consent_gate(
        &self,
        live: &Live,
        batch: &mut StateBatch<'_>,
        (seq, inbound): (u64, &Inbound),
        contact: &mut Contact,
    ) -> Result<Gate, StoreError> {
        let channel = &inbound.channel;
        let Some(page) = live.planner.messenger.get(channel) else {
            return Ok(Gate::Pass { notice: false });
        };
        let version = page.consent_version;
        let given = contact.consent.get(channel).map(|c| c.version);
        if page.consent == ConsentMode::Off || given.is_some_and(|v| v >= version) {
            return Ok(Gate::Pass { notice: false });
        }
        let announce = self.announcer(inbound);
        let at = inbound.received_at;
        let echo = inbound.kind == MessageKind::Echo;
        if page.consent == ConsentMode::Implicit && echo {
            // The page's own message: the visitor did not write, so did not consent.
            return Ok(Gate::Pass { notice: false });
        }
        if page.consent == ConsentMode::Implicit {
            let consent = Consent {
                kind: ConsentKind::Implicit,
                version,
                at,
            };
            contacts::consent::record(batch, &announce, contact, channel, consent)?;
            return Ok(Gate::Pass { notice: true });
        }
        let tapped = send::agreed_version(inbound);
        if tapped == Some(version) {
            let consent = Consent {
                kind: ConsentKind::Explicit,
                version,
                at,
            };
            contacts::consent::record(batch, &announce, contact, channel, consent)?;
            contacts::consent::remember_tap(batch, &contact.id, seq);
            let held = contacts::consent::take_held(batch, &contact.id, channel)?;
            batch.count(
                "deskgate_consent_given_total",
                &[("channel", channel.as_str())],
                1,
            );
            return Ok(Gate::Agreed(held));
        }
        // A tap on an older text's button is no message to keep: the visitor is asked again.
        let ask = match tapped {
            Some(_) => {
                contacts::consent::remember_tap(batch, &contact.id, seq);
                true
            }
            None => {
                batch.count(
                    "deskgate_consent_held_messages_total",
                    &[("channel", channel.as_str())],
                    1,
                );
                contacts::consent::hold(batch, &contact.id, seq, inbound)?
            }
        };
        if ask {
            let ctx = self.outbound_ctx(live);
            let conversation = send::request_conversation(&contact.id);
            let target = Target {
                conversation_id: &conversation,
                ticket_id: "",
            };
            send::queue(&ctx, batch, (seq, inbound), target, true)?;
        }
        Ok(Gate::Held)
    }
}
