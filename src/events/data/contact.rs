//! The data of `deskgate.contact.*` events.

use schemars::JsonSchema;
use serde::Serialize;

use crate::model::{Consent, Contact, Identity};

/// `deskgate.contact.created`: a message came from someone no contact holds.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ContactCreated {
    /// The new contact.
    pub contact: Contact,
}

/// `deskgate.contact.updated`: a message added identities or a name to a contact (or told its
/// new locale, in `contact.locale`), the control API set its owner, or the contact consented
/// to a channel's data-protection text. Exactly one of the three shapes: `added_identities`
/// with `name_added`, `owner`, or `consent`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ContactUpdated {
    /// The contact after the change.
    pub contact: Contact,
    /// Identities the message added to the contact (present when a message updated it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_identities: Option<Vec<Identity>>,
    /// Whether the message gave the contact a name it had not (present when a message updated
    /// it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_added: Option<bool>,
    /// The owner the control API set, `null` when it cleared it (present only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Option<String>>,
    /// The consent the contact just gave on the event's channel (present only then; the
    /// contact's `consent` holds every channel's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

/// `deskgate.contact.merged`: contacts proved to be one person (by a message, or by hand)
/// became one.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ContactMerged {
    /// The id of the contact that remains.
    pub surviving: String,
    /// The ids of the contacts merged into it; they resolve to the survivor from now on.
    pub absorbed: Vec<String>,
    /// The surviving contact after the merge.
    pub contact: Contact,
    /// Whether the merge was asked for through the control API (else a message proved it).
    pub manual: bool,
}

/// `deskgate.contact.merge_suggested`: a message matched several contacts that the conflict
/// guard kept apart; the message went to `contact`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ContactMergeSuggested {
    /// The contact the message went to (the one of its strongest identity).
    pub contact: Contact,
    /// The ids of the other contacts the message matched.
    pub candidates: Vec<String>,
    /// Why they were not merged, for people.
    pub reason: String,
}

impl ContactMergeSuggested {
    /// The reason the conflict guard gives.
    pub const GUARD: &'static str =
        "the contacts hold different identities of a kind a person has only one of";
}

/// `deskgate.contact.erased`: the control API erased a contact (identities, message bodies,
/// attachments).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ContactErased {
    /// The erased contact's id.
    pub contact_id: String,
    /// The ids of the contact's conversations, whose messages were blanked.
    pub conversations: Vec<String>,
    /// How many journaled messages were blanked.
    pub messages: usize,
}

/// `deskgate.contact.spam_undone`: a contact's spam flag was lifted (by unmarking the contact
/// or one of its conversations).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ContactSpamUndone {
    /// The contact's id.
    pub contact: String,
    /// The ids of its conversations whose spam mark was lifted with it.
    pub conversations: Vec<String>,
}
