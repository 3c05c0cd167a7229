//! Message-IDs deskgate mints for its own mail, and recognising them in replies.
//!
//! Format: `deskgate.{conversation_id}.{n}@{domain}` (without angle brackets, as `EmailMeta`
//! keeps ids), where `n` counts the mails sent on that conversation. A customer's reply names
//! it in In-Reply-To or References, so the conversation is found from the id alone, even when
//! the mail client dropped the rest of the thread.
//!
//! The email threading work adds the same pair as `channels::email::outbound_message_id` and
//! `own_conversation_of`; the two should converge on one implementation there, with this
//! format.

const PREFIX: &str = "deskgate.";

/// The Message-ID (no angle brackets) of the `n`th mail deskgate sends on a conversation.
pub fn outbound_message_id(conversation_id: &str, n: u64, domain: &str) -> String {
    format!("{PREFIX}{conversation_id}.{n}@{domain}")
}

/// The conversation a Message-ID deskgate minted names, or `None` for anyone else's id.
/// Accepts the id with or without angle brackets.
pub fn own_conversation_of(message_id: &str) -> Option<&str> {
    let id = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (local, domain) = id.rsplit_once('@')?;
    let rest = local.strip_prefix(PREFIX)?;
    let (conversation, n) = rest.rsplit_once('.')?;
    let valid_conversation = !conversation.is_empty()
        && conversation
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let valid_n = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    (valid_conversation && valid_n && !domain.is_empty()).then_some(conversation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_name_their_conversation() {
        let conversation = "b3ca1a5c-0d0e-5a43-9f1e-2f1f4d5c6b7a";
        let id = outbound_message_id(conversation, 7, "support.example.com");
        assert_eq!(
            id,
            "deskgate.b3ca1a5c-0d0e-5a43-9f1e-2f1f4d5c6b7a.7@support.example.com"
        );
        assert_eq!(own_conversation_of(&id), Some(conversation));
        assert_eq!(own_conversation_of(&format!("<{id}>")), Some(conversation));
    }

    #[test]
    fn other_ids_are_not_ours() {
        for id in [
            "CAF=abc@mail.gmail.com",
            "deskgate.@example.com",
            "deskgate.abc.@example.com",
            "deskgate.abc.x1@example.com",
            "deskgate.a/b.1@example.com",
            "deskgate.abc.1@",
            "",
        ] {
            assert_eq!(own_conversation_of(id), None, "{id}");
        }
    }
}
