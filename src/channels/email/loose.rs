//! Reading mail as a person's mail client shows it, where senders and subjects are written
//! loosely: headers in a legacy charset sent as raw 8-bit bytes instead of encoded words (GB2312,
//! Big5, Shift_JIS, windows-1252, …, and 7-bit ISO-2022-JP escapes), and From headers that
//! RFC 5322 would refuse but every client reads (`Test test@example.com`, `"a@b.example"`,
//! `someone@redacted`, spaces inside the address, a stray quote, `"A" <>, "B" <b@x>`).

use crate::identity;
use crate::model::Identity;

/// The first header `name` of the mail's own header block, unfolded, as raw bytes.
pub fn raw_header(raw: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut value: Option<Vec<u8>> = None;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(current) = value.as_mut() {
            if line.starts_with(b" ") || line.starts_with(b"\t") {
                current.push(b' ');
                current.extend_from_slice(line.trim_ascii());
                continue;
            }
            break;
        }
        let colon = name.len();
        if line.len() > colon
            && line[colon] == b':'
            && line[..colon].eq_ignore_ascii_case(name.as_bytes())
        {
            value = Some(line[colon + 1..].trim_ascii().to_vec());
        }
    }
    value
}

/// ISO-2022-JP's escapes into and out of JIS X 0208 / 0212 / Roman.
fn has_iso_2022_jp_escapes(value: &[u8]) -> bool {
    value.windows(3).any(|w| {
        matches!(
            w,
            [0x1b, b'$', b'B' | b'@' | b'('] | [0x1b, b'(', b'B' | b'J']
        )
    })
}

/// A header value as a person's client shows it, when it is written in a legacy charset: raw
/// bytes that are not UTF-8 (decoded with `declared`, the charset the message or its text part
/// declares, else the one detection finds in `value` and `sample`), or ISO-2022-JP escapes.
/// `None` when the value is plain ASCII or UTF-8 (mail-parser reads those, encoded words too).
pub fn legacy_text(value: &[u8], declared: Option<&str>, sample: &[u8]) -> Option<String> {
    let encoding = if has_iso_2022_jp_escapes(value) {
        encoding_rs::ISO_2022_JP
    } else if value.is_ascii()
        || std::str::from_utf8(value).is_ok()
        || value.windows(2).any(|w| w == b"=?")
    {
        // Raw bytes inside encoded words belong to the word's own charset: mail-parser reads
        // those (and [`redecode`] what it cannot).
        return None;
    } else {
        declared
            .and_then(|label| encoding_rs::Encoding::for_label(label.trim().as_bytes()))
            .filter(|e| *e != encoding_rs::UTF_8 && *e != encoding_rs::REPLACEMENT)
            .unwrap_or_else(|| detect(value, sample))
    };
    let (text, _, _) = encoding.decode(value);
    Some(text.into_owned())
}

/// A decoded header that still shows ISO-2022-JP escapes (an encoded word whose charset
/// mail-parser did not convert) or replacement characters where its raw form has encoded words
/// (a charset label mail-parser reads more narrowly than clients do, such as `gb2312` for GBK):
/// decoded again with encoding_rs. `None` when there is nothing better.
pub fn redecode(decoded: &str, raw: Option<&[u8]>) -> Option<String> {
    if has_iso_2022_jp_escapes(decoded.as_bytes()) {
        let (text, _, _) = encoding_rs::ISO_2022_JP.decode(decoded.as_bytes());
        return Some(text.into_owned());
    }
    if !decoded.contains('\u{fffd}') {
        return None;
    }
    let raw = String::from_utf8_lossy(raw?).into_owned();
    let text = decode_encoded_words(&raw)?;
    (!text.contains('\u{fffd}')).then_some(text)
}

/// RFC 2047 encoded words decoded with encoding_rs (whose labels follow what clients accept);
/// whitespace between adjacent encoded words is dropped. `None` when there is none.
fn decode_encoded_words(raw: &str) -> Option<String> {
    use base64::Engine;
    let (mut out, mut rest, mut any) = (String::new(), raw, false);
    let mut pending_space = String::new();
    while let Some(start) = rest.find("=?") {
        let word = &rest[start + 2..];
        let mut fields = word.splitn(3, '?');
        let (Some(charset), Some(kind), Some(tail)) = (fields.next(), fields.next(), fields.next())
        else {
            break;
        };
        let Some(end) = tail.find("?=") else { break };
        let (text, after) = (&tail[..end], &tail[end + 2..]);
        let between = &rest[..start];
        if !(any && between.trim().is_empty()) {
            out.push_str(&pending_space);
            out.push_str(between);
        }
        pending_space.clear();
        let bytes = match kind {
            "B" | "b" => base64::engine::general_purpose::STANDARD
                .decode(text.trim_end_matches('='))
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(text.trim_end_matches('='))
                })
                .ok()?,
            "Q" | "q" => q_decode(text),
            _ => return None,
        };
        let label = charset.split('*').next().unwrap_or(charset);
        let encoding = encoding_rs::Encoding::for_label(label.as_bytes())?;
        out.push_str(&encoding.decode(&bytes).0);
        any = true;
        rest = after;
    }
    out.push_str(rest);
    any.then_some(out)
}

fn q_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'_', _) => out.push(b' '),
            (b'=', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    out
}

/// chardetng's guess over the header and a sample of the mail (short headers alone say little).
fn detect(value: &[u8], sample: &[u8]) -> &'static encoding_rs::Encoding {
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
    detector.feed(value, false);
    detector.feed(&sample[..sample.len().min(64 * 1024)], true);
    detector.guess(None, chardetng::Utf8Detection::Allow)
}

/// An address a person would answer: `identity::email`'s normal form, or, for a domain without
/// a dot (`someone@redacted`, intranet mail), the lower-cased address as written.
pub fn loose_identity(address: &str) -> Option<Identity> {
    if let Some(identity) = identity::email(address) {
        return Some(identity);
    }
    let (local, domain) = address.rsplit_once('@')?;
    let label_ok = !domain.is_empty()
        && domain.len() <= 63
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '@' | '"')
        });
    (label_ok && local_ok).then(|| Identity::Email {
        address: format!("{}@{}", local.to_lowercase(), domain.to_ascii_lowercase()),
    })
}

/// The first usable sender in a From header's text, as a person reads it: each comma-separated
/// entry in turn (an empty `<>` passed over), the address in angle brackets, else the word with
/// an `@` (quotes stripped), spaces inside the address dropped. Returns the display name too.
pub fn loose_address(text: &str) -> Option<(Option<String>, Identity)> {
    for entry in split_entries(text) {
        if let Some(found) = entry_address(&entry) {
            return Some(found);
        }
    }
    None
}

/// Splits at commas outside quotes and angle brackets.
fn split_entries(text: &str) -> Vec<String> {
    let (mut entries, mut current) = (Vec::new(), String::new());
    let (mut quoted, mut angle) = (false, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                entries.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    entries.push(current);
    // A stray quote leaves the rest quoted: read the whole text as one entry then.
    if quoted {
        return vec![text.to_owned()];
    }
    entries
}

fn entry_address(entry: &str) -> Option<(Option<String>, Identity)> {
    let clean_name = |name: &str| {
        let name = name.trim().trim_matches(['"', '\'', ' ']).trim();
        (!name.is_empty() && !name.contains('@')).then(|| name.to_owned())
    };
    let open = entry.find('<');
    let close = open.and_then(|open| entry[open..].find('>').map(|c| open + c));
    if let (Some(open), Some(close)) = (open, close) {
        {
            let inside: String = entry[open + 1..close]
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '"')
                .collect();
            if inside.is_empty() {
                return None;
            }
            let identity = loose_identity(inside.trim_start_matches("mailto:"))?;
            return Some((clean_name(&entry[..open]), identity));
        }
    }
    let words: Vec<&str> = entry.split_whitespace().collect();
    let at = words.iter().position(|w| w.contains('@'))?;
    let word =
        words[at].trim_matches(|c: char| matches!(c, '"' | '\'' | '(' | ')' | '<' | '>' | ';'));
    // `john doe@example.com`: a local part split by a space joins the word before it only
    // when that word is not a name that stands apart (quoted or capitalised).
    let identity = loose_identity(word)?;
    let name = words[..at].join(" ");
    Some((clean_name(&name), identity))
}

/// `MAILER-DAEMON` (or `postmaster`) with no domain: a bounce's sender, not a missing one.
pub fn is_bare_machine_sender(text: &str) -> bool {
    let bare = text
        .trim()
        .trim_matches(['"', '<', '>', ' '])
        .to_ascii_lowercase();
    let bare = bare.split_whitespace().next().unwrap_or_default();
    !bare.contains('@')
        && ["mailer-daemon", "postmaster", "mail delivery subsystem"]
            .iter()
            .any(|m| bare.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Option<(Option<String>, String)> {
        loose_address(text).map(|(name, identity)| match identity {
            Identity::Email { address } => (name, address),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn loose_senders_name_the_address_a_person_sees() {
        let some = |name: Option<&str>, a: &str| Some((name.map(str::to_owned), a.to_owned()));
        assert_eq!(
            address("Test test@example.com"),
            some(Some("Test"), "test@example.com")
        );
        assert_eq!(address("someone@redacted"), some(None, "someone@redacted"));
        assert_eq!(
            address("\"someone@example.com\""),
            some(None, "someone@example.com")
        );
        assert_eq!(
            address("\"A\" <>, \"B\" <b@example.com>"),
            some(Some("B"), "b@example.com")
        );
        assert_eq!(
            address("Jo <jo smith@example.com>"),
            some(Some("Jo"), "josmith@example.com")
        );
        assert_eq!(
            address("\"Ana <ana@example.com>"),
            some(Some("Ana"), "ana@example.com")
        );
        assert_eq!(address("undisclosed-recipients:;"), None);
        assert_eq!(
            address("Bob Dunite <bob@extern> Bobby Dunite <bobby@extern>"),
            some(Some("Bob Dunite"), "bob@extern")
        );
        assert!(is_bare_machine_sender("MAILER-DAEMON"));
        assert!(is_bare_machine_sender("<MAILER-DAEMON>"));
        assert!(!is_bare_machine_sender("mailer-daemon@example.com"));
    }

    #[test]
    fn legacy_headers_decode_as_clients_do() {
        // GB2312 bytes of 中文 without any encoded word; the body declares nothing.
        let gb = [0xd6, 0xd0, 0xce, 0xc4];
        assert_eq!(
            legacy_text(&gb, Some("gb2312"), b"").as_deref(),
            Some("中文")
        );
        // windows-1252 ö.
        let latin = b"Fr\xf6sche";
        assert_eq!(
            legacy_text(latin, Some("iso-8859-1"), b"").as_deref(),
            Some("Frösche")
        );
        let jis = b"\x1b$BF|K\\8l\x1b(B test";
        assert_eq!(legacy_text(jis, None, b"").as_deref(), Some("日本語 test"));
        assert_eq!(legacy_text(b"plain", None, b""), None);
        assert_eq!(
            redecode("\u{1b}$BF|K\\8l\u{1b}(B x", None).as_deref(),
            Some("日本語 x")
        );
        // GBK characters under the label gb2312, as Chinese mail writes them.
        let raw = b"=?gb2312?B?1tDOxA==?= =?gb2312?Q?=D6=D0?=";
        assert_eq!(redecode("\u{fffd}", Some(raw)).as_deref(), Some("中文中"));
        assert_eq!(legacy_text("déjà".as_bytes(), None, b""), None);
    }
}
