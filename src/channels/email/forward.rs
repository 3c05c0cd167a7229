//! Forwards: a mail someone passed on (an agent forwarding a customer's mail to the team
//! address, a colleague passing a thread along), and who wrote it first.

use mail_parser::{Address, Message, MimeHeaders, PartType};

use crate::identity;
use crate::model::Sender;

/// A forward, with the original author when the mail names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub original_sender: Option<Sender>,
}

/// Subject prefixes mail clients put on forwards, lower-cased, without the colon: English,
/// French (TR), German (WG), Spanish (RV), Dutch (Doorst), Portuguese (ENC), Polish (PD),
/// Chinese, Japanese.
const PREFIXES: &[&str] = &[
    "fwd", "fw", "tr", "wg", "rv", "doorst", "enc", "pd", "转发", "轉寄", "転送",
];

/// Lines that open a forwarded message in the body, whatever the subject (lower-cased).
const FORWARD_MARKERS: &[&str] = &[
    "forwarded message",
    "begin forwarded message",
    "message transféré",
    "weitergeleitete nachricht",
    "doorgestuurd bericht",
    "mensaje reenviado",
    "messaggio inoltrato",
    "mensagem encaminhada",
    "videresendt melding",
    "vidarebefordrat meddelande",
];

/// Lines that open a quoted original: a forward only when the subject says so too, because
/// Outlook writes the same line above a reply's quote.
const ORIGINAL_MARKERS: &[&str] = &[
    "original message",
    "message d'origine",
    "ursprüngliche nachricht",
    "oorspronkelijk bericht",
    "mensaje original",
    "messaggio originale",
    "mensagem original",
];

/// Header names that introduce the original author in a quoted header block.
const FROM_LABELS: &[&str] = &[
    "from",
    "von",
    "de",
    "van",
    "da",
    "od",
    "från",
    "fra",
    "from ",
    "发件人",
    "差出人",
];

/// How many lines after a marker the original `From:` line may be.
const HEADER_BLOCK_LINES: usize = 12;

/// Whether `message` is a forward, and whose.
pub fn detect(message: &Message<'_>, text: &str) -> Option<Forwarded> {
    // A reply quotes what it answers, forward markers included: it is a reply, not a forward.
    if message.subject().is_some_and(is_reply) {
        return None;
    }
    let by_subject = message.subject().is_some_and(has_forward_prefix);
    if let Some(attached) = attached_message(message) {
        let original_sender = attached.from().and_then(Address::first).and_then(|a| {
            Some(Sender {
                name: a
                    .name()
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty()),
                identities: vec![identity::email(a.address()?)?],
                spellings: identity::spellings(a.address()),
                ..Sender::default()
            })
        });
        return Some(Forwarded { original_sender });
    }
    let lines: Vec<&str> = text.lines().collect();
    let marker = lines.iter().position(|line| {
        let line = line.trim().to_lowercase();
        FORWARD_MARKERS.iter().any(|m| line.contains(m))
            || by_subject && ORIGINAL_MARKERS.iter().any(|m| line.contains(m))
    });
    match marker {
        Some(at) => Some(Forwarded {
            original_sender: from_line(&lines[at + 1..]),
        }),
        None if by_subject => Some(Forwarded {
            original_sender: from_line(&lines),
        }),
        None => None,
    }
}

/// `Fwd: `, `FW:`, `[list] Fwd:`, `TR :` (French spacing), `Fwd[2]:`.
pub fn has_forward_prefix(subject: &str) -> bool {
    let mut rest = subject.trim_start();
    // Old Netscape/Thunderbird wrap the whole subject: `[Fwd: ...]`.
    if let Some(inner) = rest.strip_prefix('[') {
        if has_forward_prefix_word(inner) {
            return true;
        }
    }
    // A list tag in front: `[support] Fwd: ...`.
    if rest.starts_with('[') {
        if let Some(end) = rest.find(']') {
            rest = rest[end + 1..].trim_start();
        }
    }
    has_forward_prefix_word(rest)
}

fn has_forward_prefix_word(text: &str) -> bool {
    let Some(colon) = text.find([':', '：']) else {
        return false;
    };
    let word = text[..colon].trim().to_lowercase();
    let word = word.split('[').next().unwrap_or("").trim();
    PREFIXES.contains(&word)
}

/// Reply prefixes: English, German (AW), Scandinavian (SV), Dutch (Antw), French (Réf),
/// Italian (Rif), Chinese.
const REPLY_PREFIXES: &[&str] = &["re", "aw", "sv", "antw", "réf", "rif", "回复", "答复"];

/// The subject without its leading reply prefixes, and whether there were any.
fn strip_reply(subject: &str) -> (bool, &str) {
    let mut rest = subject.trim_start();
    let mut replied = false;
    while let Some((word, after)) = rest.split_once([':', '：']) {
        let word = word.trim().to_lowercase();
        let word = word.split('[').next().unwrap_or("").trim();
        if !REPLY_PREFIXES.contains(&word) {
            break;
        }
        replied = true;
        rest = after.trim_start();
    }
    (replied, rest)
}

/// `Re: ...`, `AW: ...`.
pub fn is_reply(subject: &str) -> bool {
    strip_reply(subject).0
}

/// `Re: Fwd: ...`: a reply on a thread that began as a forward.
pub fn is_reply_to_forward(subject: &str) -> bool {
    let (replied, rest) = strip_reply(subject);
    replied && has_forward_prefix(rest)
}

/// An attached `message/rfc822` that is the point of the mail (not a report's returned copy).
fn attached_message<'a>(message: &'a Message<'a>) -> Option<&'a Message<'a>> {
    let is_report = message.content_type().is_some_and(|ct| {
        ct.subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    if is_report {
        return None;
    }
    message
        .parts
        .iter()
        .skip(1)
        .find_map(|part| match &part.body {
            PartType::Message(inner) => Some(inner),
            _ => None,
        })
}

/// The first `From: Name <address>` line (in any of the clients' languages) in a quoted header
/// block.
fn from_line(lines: &[&str]) -> Option<Sender> {
    lines
        .iter()
        .take(HEADER_BLOCK_LINES)
        .filter_map(|line| {
            let line = line.trim().trim_start_matches(['>', '*', ' ']);
            let (label, value) = line.split_once([':', '：'])?;
            let label = label.trim().trim_matches('*').trim().to_lowercase();
            FROM_LABELS.contains(&label.as_str()).then_some(value)
        })
        .find_map(parse_mailbox)
}

/// `Name <a@b>`, `"Name" <a@b>`, `Name [mailto:a@b]`, `a@b`, `a@b (Name)`.
fn parse_mailbox(value: &str) -> Option<Sender> {
    let value = value.trim().trim_matches('*').trim();
    let (name, address) = if let Some(open) = value.find(['<', '[']) {
        let close = value[open..].find(['>', ']'])? + open;
        let address = value[open + 1..close].trim();
        let address = address.strip_prefix("mailto:").unwrap_or(address);
        (value[..open].trim(), address)
    } else {
        let address = value.split_whitespace().find(|w| w.contains('@'))?;
        let name = value.replace(address, "");
        let address = address.trim_matches(['(', ')', ',']);
        return Some(Sender {
            name: clean_name(&name),
            identities: vec![identity::email(address)?],
            spellings: identity::spellings([address]),
            ..Sender::default()
        });
    };
    Some(Sender {
        name: clean_name(name),
        identities: vec![identity::email(address)?],
        spellings: identity::spellings([address]),
        ..Sender::default()
    })
}

fn clean_name(name: &str) -> Option<String> {
    let name = name.trim().trim_matches(['"', '\'', '(', ')', ' ']).trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_in_many_languages() {
        for subject in [
            "Fwd: Order",
            "FW: Order",
            "TR : Commande",
            "WG: Bestellung",
            "RV: Pedido",
            "Doorst: bestelling",
            "[support] Fwd: x",
            "Fwd[2]: x",
            "[Fwd: Map of Argentina]",
        ] {
            assert!(has_forward_prefix(subject), "{subject}");
        }
        for subject in [
            "Re: Fwd: x",
            "Forward planning",
            "Trade: x",
            "Re: order",
            "",
        ] {
            assert!(!has_forward_prefix(subject), "{subject}");
        }
    }

    #[test]
    fn quoted_from_lines() {
        let gmail = ["", "From: Jane Doe <Jane@Example.com>", "Date: today"];
        let sender = from_line(&gmail).unwrap();
        assert_eq!(sender.name.as_deref(), Some("Jane Doe"));
        assert_eq!(
            sender.identities,
            vec![identity::email("jane@example.com").unwrap()]
        );
        let outlook = ["Von: Max Muster [mailto:max@example.de]", "Gesendet: ..."];
        assert_eq!(
            from_line(&outlook).unwrap().identities,
            vec![identity::email("max@example.de").unwrap()]
        );
        let bare = ["*From:* bob@example.org"];
        assert_eq!(from_line(&bare).unwrap().name, None);
        assert!(from_line(&["From: nobody"]).is_none());
    }
}
