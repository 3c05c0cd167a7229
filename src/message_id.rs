//! Message-ID rules, shared by the email channel (threading headers, bounces), conversations
//! (threading) and outbound (composing): how an id is written bare, how one is read from a
//! quoted `Message-ID:` line, and the ids deskgate puts on its own mail, which name the
//! conversation they belong to, so a reply (or a bounce) that quotes one threads back without
//! any lookup table.
//!
//! Own ids' shape: `deskgate.<conversation-id>.<n>@<domain>` (ids are kept without angle brackets).
//! Conversation ids are UUIDv5s derived from the instance id, so they are not guessable by
//! outsiders who want to attach mail to someone else's conversation.

use crate::config::outbound::MailboxConfig;

const PREFIX: &str = "deskgate.";

/// A Message-ID as deskgate keeps it: trimmed, without its angle brackets.
pub fn bare(message_id: &str) -> &str {
    message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
}

/// A Message-ID as headers write it: in angle brackets.
pub fn bracketed(message_id: &str) -> String {
    format!("<{}>", bare(message_id))
}

/// The Message-ID a `Message-ID:` header line among `text` names (as quoted in a bounce's
/// text or returned headers), bare.
pub fn quoted_in(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (name, value) = line.trim_start().split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("message-id") {
            return None;
        }
        let id = value.trim().trim_start_matches('<');
        let id = id.split('>').next().unwrap_or(id).trim();
        (!id.is_empty() && id.contains('@')).then(|| id.to_owned())
    })
}

/// The domain of a mailbox's own Message-IDs (`message_id_domain`, else its address's).
pub fn domain_of(mailbox: &MailboxConfig) -> String {
    mailbox.message_id_domain.clone().unwrap_or_else(|| {
        mailbox
            .address
            .rsplit_once('@')
            .map(|(_, d)| d.to_owned())
            .unwrap_or_else(|| "deskgate.invalid".to_owned())
    })
}

/// The Message-ID of the `n`th mail deskgate sends on a conversation, without angle brackets.
pub fn outbound_message_id(conversation_id: &str, n: u64, domain: &str) -> String {
    format!("{PREFIX}{conversation_id}.{n}@{domain}")
}

/// The conversation a Message-ID names, when deskgate minted it (angle brackets allowed).
pub fn own_conversation_of(message_id: &str) -> Option<String> {
    let (local, domain) = bare(message_id).rsplit_once('@')?;
    if domain.is_empty() {
        return None;
    }
    let rest = local.strip_prefix(PREFIX)?;
    let (conversation, n) = rest.rsplit_once('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let uuid = uuid::Uuid::parse_str(conversation).ok()?;
    // Only the hyphenated lower-case form deskgate writes, so one conversation has one spelling.
    (uuid.hyphenated().to_string() == conversation).then(|| conversation.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_ids_round_trip() {
        let conversation = "1b4e28ba-2fa1-51d2-883f-0016d3cca427";
        let id = outbound_message_id(conversation, 3, "support.example.com");
        assert_eq!(
            id,
            "deskgate.1b4e28ba-2fa1-51d2-883f-0016d3cca427.3@support.example.com"
        );
        assert_eq!(own_conversation_of(&id).as_deref(), Some(conversation));
        assert_eq!(
            own_conversation_of(&format!("<{id}>")).as_deref(),
            Some(conversation)
        );
    }

    #[test]
    fn foreign_ids_are_not_ours() {
        for id in [
            "CAKx=abc@mail.gmail.com",
            "deskgate.not-a-uuid.1@x.example",
            "deskgate.1b4e28ba-2fa1-51d2-883f-0016d3cca427.@x.example",
            "deskgate.1b4e28ba-2fa1-51d2-883f-0016d3cca427.1@",
            "deskgate.1B4E28BA-2FA1-51D2-883F-0016D3CCA427.1@x.example",
            "",
        ] {
            assert_eq!(own_conversation_of(id), None, "{id}");
        }
    }
}
