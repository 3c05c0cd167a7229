//! Message-IDs deskgate puts on its own mail: they name the conversation they belong to, so a
//! reply (or a bounce) that quotes one threads back without any lookup table.
//!
//! Shape: `deskgate.<conversation-id>.<n>@<domain>` (ids are kept without angle brackets).
//! Conversation ids are UUIDv5s derived from the instance id, so they are not guessable by
//! outsiders who want to attach mail to someone else's conversation.

const PREFIX: &str = "deskgate.";

/// The Message-ID of the `n`th mail deskgate sends on a conversation, without angle brackets.
pub fn outbound_message_id(conversation_id: &str, n: u64, domain: &str) -> String {
    format!("{PREFIX}{conversation_id}.{n}@{domain}")
}

/// The conversation a Message-ID names, when deskgate minted it (angle brackets allowed).
pub fn own_conversation_of(message_id: &str) -> Option<String> {
    let id = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (local, domain) = id.rsplit_once('@')?;
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
