//! Forwarding each customer mail on a team mailbox to the members it names (`forward_to`).
//!
//! Runs inside the processor step that records the message, like the acknowledgement: one
//! automatic item per member address, queued in the same atomic write, so a crash and replay
//! forward each message at most once. Members are resolved from the directory as the step
//! sees it (config users overlaid with control API changes): a team is every user in it then.
//! The original travels inline (a From/Date/Subject/To block and its text, in the template)
//! with its attachments; replies go to the mailbox (Reply-To) and thread into the ticket.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::apply::Ctx;
use super::automatic;
use super::Purpose;
use crate::config::outbound::ForwardTo;
use crate::conversations::Conversation;
use crate::model::{AutomaticKind, AutomaticRequest, Identity, Inbound, MessageKind};
use crate::routing::{directory_users, DirectoryState, User};
use crate::store::{keys, StateBatch, StoreError};

/// Forwards a customer message that arrived on `mailbox`'s channels to its members. The caller
/// has already left out history and flagged spam senders' mail.
pub fn inbound(
    ctx: &Ctx<'_>,
    batch: &mut StateBatch<'_>,
    seq: u64,
    inbound: &Inbound,
    (conversation, mailbox): (&Conversation, &str),
) -> Result<(), StoreError> {
    let Some(config) = ctx.planner.mailboxes.get(mailbox) else {
        return Ok(());
    };
    if config.forward_to.is_empty() {
        return Ok(());
    }
    let directory: DirectoryState = batch.get(&keys::directory())?.unwrap_or_default();
    let users = directory_users(ctx.rules, &directory);
    let members = member_addresses(&users, &config.forward_to);
    let own: BTreeSet<String> = (ctx.planner.mailboxes.values())
        .map(|m| m.address.trim().to_lowercase())
        .collect();
    if let Some(reason) = not_forwarded(inbound, &members, &own) {
        tracing::debug!(conversation = %conversation.id, reason, "mail not forwarded");
        return Ok(());
    }
    let fields = original_fields(inbound);
    // A mail's attachments are blobs the sender can read; another channel's may be a
    // platform's media ids.
    let attachments = match inbound.email {
        Some(_) => inbound.attachments.as_slice(),
        None => &[],
    };
    for to in members {
        let request = AutomaticRequest {
            idempotency_key: format!("forward:{seq}:{to}"),
            kind: AutomaticKind::Notification,
            template: config.forward_template.clone(),
            conversation_id: conversation.id.clone(),
            to: Some(to),
            fields: fields.clone(),
            requested_at: inbound.received_at,
        };
        let asked = (&request, Purpose::Forward);
        let outcome = automatic::request_mail(ctx, batch, seq, asked, attachments)?;
        let about = (
            conversation.ticket_id.as_str(),
            conversation.channel.as_str(),
        );
        automatic::announce_refused(ctx, batch, seq, &request, about, outcome)?;
    }
    Ok(())
}

/// The lower-cased addresses of the users named, and of every user in a team named; each once.
fn member_addresses(users: &BTreeMap<String, User>, forward_to: &ForwardTo) -> BTreeSet<String> {
    users
        .iter()
        .filter(|(id, user)| {
            forward_to.users.contains(id)
                || user
                    .teams
                    .iter()
                    .any(|team| forward_to.teams.contains(team))
        })
        .filter_map(|(_, user)| user.email.as_deref())
        .map(|address| address.trim().to_lowercase())
        .filter(|address| !address.is_empty())
        .collect()
}

/// Why this message must not be forwarded, if it must not.
fn not_forwarded(
    inbound: &Inbound,
    members: &BTreeSet<String>,
    own: &BTreeSet<String>,
) -> Option<&'static str> {
    if inbound.kind != MessageKind::Message {
        return Some("not a customer message");
    }
    if inbound.flags.bounce.is_some() {
        return Some("a bounce");
    }
    if inbound.flags.automatic {
        return Some("automatic mail");
    }
    let mut senders = sender_addresses(inbound);
    if senders.any(|address| own.contains(&address)) {
        return Some("deskgate's own mail");
    }
    if sender_addresses(inbound).any(|address| members.contains(&address)) {
        return Some("mail from a member");
    }
    None
}

fn sender_addresses(inbound: &Inbound) -> impl Iterator<Item = String> + '_ {
    inbound
        .sender
        .identities
        .iter()
        .filter_map(|identity| match identity {
            Identity::Email { address } => Some(address.trim().to_lowercase()),
            _ => None,
        })
}

/// The original as the template sees it: `original.from`, `.date`, `.subject`, `.to`, `.cc`,
/// `.text`.
fn original_fields(inbound: &Inbound) -> serde_json::Map<String, serde_json::Value> {
    let address = sender_addresses(inbound).next();
    let from = match (&inbound.sender.name, &address) {
        (Some(name), Some(address)) => format!("{name} <{address}>"),
        (None, Some(address)) => address.clone(),
        (Some(name), None) => name.clone(),
        (None, None) => String::new(),
    };
    let email = inbound.email.as_ref();
    let list =
        |addresses: Option<&Vec<String>>| addresses.map(|a| a.join(", ")).unwrap_or_default();
    let date = inbound.sent_at.unwrap_or(inbound.received_at).to_rfc2822();
    let original = json!({
        "from": from,
        "date": date,
        "subject": inbound.subject.clone().unwrap_or_default(),
        "to": list(email.map(|e| &e.to)),
        "cc": list(email.map(|e| &e.cc)),
        "text": inbound.text,
    });
    let mut fields = serde_json::Map::new();
    fields.insert("original".into(), original);
    fields
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::{Bounce, Sender};

    fn user(email: &str, teams: &[&str]) -> User {
        User {
            name: email.to_owned(),
            email: Some(email.to_owned()),
            seat: true,
            teams: teams.iter().map(|t| (*t).to_owned()).collect(),
            availability: Default::default(),
        }
    }

    fn mail_from(address: &str) -> Inbound {
        let sender = Sender {
            identities: vec![Identity::Email {
                address: address.to_owned(),
            }],
            ..Sender::default()
        };
        Inbound::new("mail", "m1", "t1", sender, "hello", Utc::now())
    }

    /// A team is expanded to its users; a user named and in a named team gets one copy.
    #[test]
    fn members_are_users_and_team_users_each_once() {
        let users = BTreeMap::from([
            ("alice".to_owned(), user("Alice@Acme.test", &["billing"])),
            ("bob".to_owned(), user("bob@acme.test", &["billing"])),
            ("carol".to_owned(), user("carol@acme.test", &["sales"])),
        ]);
        let forward_to = ForwardTo {
            users: vec!["alice".into()],
            teams: vec!["billing".into()],
        };
        let members: Vec<String> = member_addresses(&users, &forward_to).into_iter().collect();
        assert_eq!(members, ["alice@acme.test", "bob@acme.test"]);
    }

    #[test]
    fn automatic_mail_bounces_members_and_own_mail_are_not_forwarded() {
        let members = BTreeSet::from(["alice@acme.test".to_owned()]);
        let own = BTreeSet::from(["support@acme.test".to_owned()]);
        let verdict = |inbound: &Inbound| not_forwarded(inbound, &members, &own);
        assert_eq!(verdict(&mail_from("customer@example.com")), None);
        assert_eq!(
            verdict(&mail_from("ALICE@acme.test")),
            Some("mail from a member")
        );
        assert_eq!(
            verdict(&mail_from("support@acme.test")),
            Some("deskgate's own mail")
        );
        let mut automatic = mail_from("customer@example.com");
        automatic.flags.automatic = true;
        assert_eq!(verdict(&automatic), Some("automatic mail"));
        let mut bounce = mail_from("mailer-daemon@example.com");
        bounce.flags.bounce = Some(Bounce::default());
        assert_eq!(verdict(&bounce), Some("a bounce"));
    }
}
