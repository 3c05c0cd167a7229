//! The comparison of the consumer's tables with deskgate's own view, through the control API.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::outbound_support::TOKEN;
use test_kit::Daemon;

/// How many of each kind the comparison saw.
#[derive(Debug, Default)]
pub struct Compared {
    pub live_tickets: usize,
    pub gone_tickets: usize,
    pub live_contacts: usize,
    pub absorbed_contacts: usize,
    pub erased_contacts: usize,
}

/// Every ticket and contact id the events or the consumer's tables name, compared one by one
/// with deskgate's control API.
pub async fn compare(daemon: &Daemon, store: &Connection, events: &[Value]) -> Compared {
    let mut tickets = ids(store, "SELECT id FROM tickets");
    let mut contacts = ids(store, "SELECT id FROM contacts");
    for event in events {
        let subject = event["subject"].as_str().unwrap().to_owned();
        match event["type"].as_str().unwrap() {
            "deskgate.ticket.created" => tickets.insert(subject),
            "deskgate.ticket.split" => {
                tickets.insert(event["data"]["new_ticket"].as_str().unwrap().to_owned())
            }
            t if t.starts_with("deskgate.contact.") => contacts.insert(subject),
            _ => false,
        };
    }
    let mut compared = Compared::default();
    for id in &tickets {
        let path = format!("/v1/control/tickets/{id}");
        let (status, view) = daemon.control(TOKEN, "GET", &path, None).await;
        let row = ticket_row(store, id);
        if status == 404 {
            let row = row.unwrap_or_else(|| panic!("ticket {id}: the consumer never saw it"));
            assert!(
                !row.live,
                "ticket {id}: deskgate has it no more, the consumer does"
            );
            compared.gone_tickets += 1;
            continue;
        }
        assert_eq!(status, 200, "{view}");
        let expected = TicketRow::from_view(&view);
        assert_eq!(
            row.as_ref(),
            Some(&expected),
            "ticket {id}: consumer vs deskgate"
        );
        compared.live_tickets += 1;
    }
    for id in &contacts {
        let path = format!("/v1/control/contacts/{id}");
        let (status, view) = daemon.control(TOKEN, "GET", &path, None).await;
        let row = contact_row(store, id)
            .unwrap_or_else(|| panic!("contact {id}: the consumer never saw it"));
        match status {
            // Erased, or merged into a contact erased since (counted as erased).
            404 => {
                let mut last = row;
                while let Some(survivor) = &last.merged_into {
                    last = contact_row(store, survivor).unwrap();
                }
                assert!(
                    last.erased,
                    "contact {id}: erased in deskgate, not in the consumer: {last:?}"
                );
                assert!(last.identities.is_empty(), "contact {id}: {last:?}");
                compared.erased_contacts += 1;
            }
            200 if view["contact"]["id"] == id.as_str() => {
                let expected = ContactRow::from_view(&view["contact"]);
                assert_eq!(row, expected, "contact {id}: consumer vs deskgate");
                compared.live_contacts += 1;
            }
            200 => {
                let survivor = view["contact"]["id"].as_str().unwrap();
                assert_eq!(
                    row.merged_into.as_deref(),
                    Some(survivor),
                    "contact {id}: deskgate merged it into {survivor}; the consumer: {row:?}"
                );
                compared.absorbed_contacts += 1;
            }
            _ => panic!("contact {id}: {status} {view}"),
        }
    }
    compared
}

fn ids(store: &Connection, sql: &str) -> BTreeSet<String> {
    let mut statement = store.prepare(sql).unwrap();
    let rows = statement.query_map([], |row| row.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

/// A ticket as both sides are compared: the consumer's row, or deskgate's view.
#[derive(Debug, PartialEq)]
struct TicketRow {
    live: bool,
    number: u64,
    contact: String,
    subject: Option<String>,
    pipeline: Option<String>,
    status: Option<String>,
    owner: Option<String>,
    /// Conversation id → (closed, spam).
    conversations: BTreeMap<String, (bool, bool)>,
}

impl TicketRow {
    fn from_view(view: &Value) -> TicketRow {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let routing = &view["routing"];
        let conversations = view["conversations"].as_array().unwrap();
        TicketRow {
            live: true,
            number: view["ticket"]["number"].as_u64().unwrap(),
            contact: text(&view["ticket"]["contact_id"]).unwrap(),
            subject: text(&view["ticket"]["subject"]),
            pipeline: text(&routing["pipeline"]),
            status: text(&routing["status"]),
            owner: text(&routing["owner"]),
            conversations: conversations
                .iter()
                .map(|c| {
                    let flag = |name: &str| c["state"][name].as_bool().unwrap_or(false);
                    (text(&c["id"]).unwrap(), (flag("closed"), flag("spam")))
                })
                .collect(),
        }
    }
}

fn ticket_row(store: &Connection, id: &str) -> Option<TicketRow> {
    let mut row = store
        .query_row(
            "SELECT merged_into IS NULL AND deleted = 0, number, contact_id, subject, pipeline,
                 status, owner FROM tickets WHERE id = ?1",
            [id],
            |row| {
                Ok(TicketRow {
                    live: row.get(0)?,
                    number: row.get::<_, i64>(1)? as u64,
                    contact: row.get(2)?,
                    subject: row.get(3)?,
                    pipeline: row.get(4)?,
                    status: row.get(5)?,
                    owner: row.get(6)?,
                    conversations: BTreeMap::new(),
                })
            },
        )
        .optional()
        .unwrap()?;
    let mut statement = store
        .prepare("SELECT id, closed, spam FROM conversations WHERE ticket_id = ?1 AND deleted = 0")
        .unwrap();
    let rows = statement
        .query_map([id], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap();
    row.conversations = rows.map(Result::unwrap).collect();
    Some(row)
}

/// A contact as both sides are compared.
#[derive(Debug, PartialEq)]
struct ContactRow {
    name: Option<String>,
    owner: Option<String>,
    merged_into: Option<String>,
    erased: bool,
    /// `(kind, channel, value)`.
    identities: BTreeSet<(String, String, String)>,
}

impl ContactRow {
    fn from_view(contact: &Value) -> ContactRow {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let identities = contact["identities"].as_array().unwrap().iter().map(|i| {
            let kind = text(&i["kind"]).unwrap();
            let value = match kind.as_str() {
                "email" => text(&i["address"]),
                "phone" => text(&i["number"]),
                _ => text(&i["id"]),
            };
            (
                kind,
                text(&i["channel"]).unwrap_or_default(),
                value.unwrap(),
            )
        });
        ContactRow {
            name: text(&contact["name"]),
            owner: text(&contact["owner"]),
            merged_into: None,
            erased: false,
            identities: identities.collect(),
        }
    }
}

fn contact_row(store: &Connection, id: &str) -> Option<ContactRow> {
    let mut row = store
        .query_row(
            "SELECT name, owner, merged_into, erased FROM contacts WHERE id = ?1",
            [id],
            |row| {
                Ok(ContactRow {
                    name: row.get(0)?,
                    owner: row.get(1)?,
                    merged_into: row.get(2)?,
                    erased: row.get(3)?,
                    identities: BTreeSet::new(),
                })
            },
        )
        .optional()
        .unwrap()?;
    let mut statement = store
        .prepare("SELECT kind, channel, value FROM contact_identities WHERE contact_id = ?1")
        .unwrap();
    let rows = statement
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    row.identities = rows.map(Result::unwrap).collect();
    Some(row)
}
