//! Normalising the identities people are known by, so that the same person is found again:
//! channel adapters normalise what they report, and the control API what it is asked about.
//!
//! - Email: trimmed, lower-cased, the domain in its ASCII (punycode) form. Invalid addresses are
//!   not identities: the adapter keeps them as sender text.
//! - Phone: E.164 through libphonenumber's metadata (the `phonenumber` crate), with the
//!   configured default region (`[contacts] default_region`, a [`Region`] passed in by the
//!   caller) for numbers written without a country code. A WhatsApp `wa_id` is the same phone identity ([`whatsapp_id`]).
//! - Channel-scoped ids ([`Identity::Channel`]): an integration's customer id ([`external`]),
//!   a Messenger page-scoped id ([`messenger`]), a WhatsApp business-scoped user id
//!   ([`whatsapp_user`]), a website-chat visitor token ([`chat_visitor`]). Their `id` spelling
//!   tells the conflict guard what kind they are: see [`one_per_person_scope`].
//!
//! Messenger gives no email or phone, and a PSID is scoped to one page: the same person writing
//! to two pages is two identities, which merge only by hand (`POST /v1/control/contacts/{id}/
//! merge`) or when a later message carries an email or phone known on both sides.

use std::collections::BTreeMap;
use std::str::FromStr;

use phonenumber::country;

use crate::model::Identity;

/// The region for phone numbers written without a country code (`[contacts] default_region`,
/// read at start-up); the default requires a country code. Adapters normalise before
/// journaling, so the processor never depends on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Region(Option<country::Id>);

impl Region {
    /// The region an ISO 3166 code such as `GB` names; `None` requires a country code.
    pub fn parse(code: Option<&str>) -> Result<Region, String> {
        code.map(parse_region).transpose().map(Region)
    }
}

/// An ISO 3166 alpha-2 region code libphonenumber knows.
pub fn parse_region(code: &str) -> Result<country::Id, String> {
    country::Id::from_str(&code.trim().to_ascii_uppercase())
        .map_err(|_| format!("{code:?} is not a region code libphonenumber knows (such as GB)"))
}

/// An email address, trimmed, lower-cased, IDN domain in ASCII, if it is plausibly one
/// (`local@domain.tld`).
pub fn email(raw: &str) -> Option<Identity> {
    let trimmed = raw.trim();
    let (local, domain) = trimmed.rsplit_once('@')?;
    if local.is_empty()
        || local.len() > 64
        || local.contains('@')
        || local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
    {
        return None;
    }
    // `domain_to_ascii` maps case, applies IDNA (UTS 46) and refuses invalid labels.
    let domain = idna::domain_to_ascii(domain).ok()?;
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok || !domain.contains('.') || domain.len() > 253 {
        return None;
    }
    let mut address = local.to_lowercase();
    address.push('@');
    address.push_str(&domain);
    Some(Identity::Email { address })
}

/// The addresses among `raw` whose spelling differs from their normalised form, keyed by the
/// normalised address ([`crate::model::Sender::spellings`]). Invalid ones are left out, as
/// [`email`] leaves them out of the identities.
pub fn spellings<'a>(raw: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for raw in raw {
        if let Some(Identity::Email { address }) = email(raw) {
            let written = raw.trim();
            if written != address {
                found.entry(address).or_insert_with(|| written.to_owned());
            }
        }
    }
    found
}

/// A phone number in E.164, if libphonenumber finds a valid one, using `region` for national
/// numbers.
pub fn phone(raw: &str, Region(region): Region) -> Option<Identity> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 64 {
        return None;
    }
    // The parser is outside code fed with outside input: a panic must not take the request.
    let parsed = std::panic::catch_unwind(|| phonenumber::parse(region, raw)).ok()?;
    let number = parsed.ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    Some(Identity::Phone {
        number: number.format().mode(phonenumber::Mode::E164).to_string(),
    })
}

/// A WhatsApp `wa_id` (the international number as digits, no `+`) as the same phone identity
/// a phone number written anywhere else yields.
pub fn whatsapp_id(wa_id: &str) -> Option<Identity> {
    let digits = wa_id.trim().trim_start_matches('+');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    phone(&format!("+{digits}"), Region::default())
}

/// An integration's own customer id on an API channel: one per person on that channel.
pub fn external(channel: &str, id: &str) -> Identity {
    Identity::Channel {
        channel: channel.to_owned(),
        id: id.to_owned(),
    }
}

/// Prefix of Messenger page-scoped ids: `psid:<page id>:<psid>`.
const PSID_PREFIX: &str = "psid:";
/// Prefix of WhatsApp business-scoped user ids: `whatsapp_user:<business account id>:<id>`.
const WHATSAPP_USER_PREFIX: &str = "whatsapp_user:";
/// Prefix of website-chat visitor tokens: `visitor:<token>`.
const VISITOR_PREFIX: &str = "visitor:";
/// Ids that name a person within a scope, spelt `<prefix><scope>:<id>`.
const SCOPED_PREFIXES: [&str; 2] = [PSID_PREFIX, WHATSAPP_USER_PREFIX];

/// A Messenger sender: the page-scoped id (PSID) on one page. One per person per page.
pub fn messenger(channel: &str, page_id: &str, psid: &str) -> Identity {
    Identity::Channel {
        channel: channel.to_owned(),
        id: format!("{PSID_PREFIX}{page_id}:{psid}"),
    }
}

/// A WhatsApp customer by business-scoped user id (BSUID, Meta's `user_id`), which Meta gives
/// per business portfolio; deskgate scopes it by the WhatsApp Business Account that reported it
/// (`entry[].id`), which belongs to one portfolio. One per person per account.
pub fn whatsapp_user(channel: &str, account_id: &str, user_id: &str) -> Identity {
    Identity::Channel {
        channel: channel.to_owned(),
        id: format!("{WHATSAPP_USER_PREFIX}{account_id}:{user_id}"),
    }
}

/// The business-scoped user id of a [`whatsapp_user`] identity.
pub fn whatsapp_user_id(identity: &Identity) -> Option<&str> {
    match identity {
        Identity::Channel { id, .. } => id
            .strip_prefix(WHATSAPP_USER_PREFIX)
            .map(|rest| rest.rsplit_once(':').map_or(rest, |(_, user)| user)),
        _ => None,
    }
}

/// `(prefix, scope, id)` of a scoped id (`psid:`, `whatsapp_user:`).
fn scoped(id: &str) -> Option<(&'static str, &str, &str)> {
    SCOPED_PREFIXES.iter().find_map(|prefix| {
        let rest = id.strip_prefix(prefix)?;
        let (scope, user) = rest.rsplit_once(':').unwrap_or((rest, rest));
        Some((*prefix, scope, user))
    })
}

/// A website-chat visitor token. A person may have several (browsers, devices), so visitor
/// tokens never block a merge.
pub fn chat_visitor(channel: &str, token: &str) -> Identity {
    Identity::Channel {
        channel: channel.to_owned(),
        id: format!("{VISITOR_PREFIX}{token}"),
    }
}

/// The id the channel's own platform knows the person by, to address a reply: a Messenger
/// identity's PSID, a WhatsApp business-scoped user id, a visitor's token, an integration's id
/// as it is. `None` for emails and phones, which are addresses already.
pub fn platform_user_id(identity: &Identity) -> Option<&str> {
    let Identity::Channel { id, .. } = identity else {
        return None;
    };
    if let Some(token) = id.strip_prefix(VISITOR_PREFIX) {
        return Some(token);
    }
    if let Some((_, _, user)) = scoped(id) {
        return Some(user);
    }
    Some(id)
}

/// For identities a person has only one of within a scope (an integration's customer id on
/// one channel, a PSID on one page, a WhatsApp business-scoped user id in one business
/// account), that scope; two different identities with the same scope
/// are evidence of two people, and block an automatic merge. `None` for emails, phones and
/// visitor tokens, of which a person may have several.
pub fn one_per_person_scope(identity: &Identity) -> Option<String> {
    let Identity::Channel { channel, id } = identity else {
        return None;
    };
    if id.starts_with(VISITOR_PREFIX) {
        return None;
    }
    if let Some((prefix, scope, _)) = scoped(id) {
        return Some(format!("{channel}:{prefix}{scope}"));
    }
    Some(channel.clone())
}

#[cfg(test)]
mod tests;
