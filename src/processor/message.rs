//! The data of a message's own event (`ticket.created`, `ticket.message_added`,
//! `conversation.message_added`).

use super::Processor;
use crate::conversations::{self, Threaded};
use crate::events::data::{ConversationRef, MessageAdded, MessageView, Micros};
use crate::model::Inbound;
use crate::tickets;

impl Processor {
    /// The data of the message's own event: the message, its conversation, and its ticket as
    /// the routing step left it (none on a channel that opens no tickets).
    pub(super) fn message_data(
        &self,
        seq: u64,
        inbound: &Inbound,
        threaded: &Threaded,
        routed: &tickets::Routed,
        history: Option<&String>,
    ) -> MessageAdded {
        let conversation = &threaded.conversation;
        MessageAdded {
            ticket: routed.ticket_view(&threaded.ticket),
            conversation: ConversationRef {
                id: conversation.id.clone(),
                channel: conversation.channel.clone(),
                thread_id: conversation.thread_key.clone(),
                reply_window_ends_at: conversation.reply_window_ends_at.map(Micros),
                human_agent_window_ends_at: conversation.human_agent_window_ends_at.map(Micros),
            },
            message: MessageView {
                id: self.minter.message_id(seq),
                journal_seq: seq,
                direction: conversations::direction(inbound),
                channel: inbound.channel.clone(),
                external_id: inbound.external_id.clone(),
                from: inbound.sender.clone(),
                kind: inbound.kind,
                subject: inbound.subject.clone(),
                text: inbound.text.clone(),
                // A mail without HTML has none in its event (not an invented or empty one).
                html: inbound.html.clone(),
                flags: inbound.flags.clone(),
                email: inbound.email.clone(),
                attachments: inbound.attachments.clone(),
                extra: inbound.extra.clone(),
                sent_at: inbound.sent_at.map(Micros),
                received_at: Micros(inbound.received_at),
                spam: routed.spam,
                imported: history.is_some(),
                imported_reason: history.cloned(),
            },
        }
    }
}
