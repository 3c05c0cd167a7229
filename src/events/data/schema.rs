//! The JSON Schemas of event data, generated from the Rust types in [`super`] and committed
//! under `schemas/events/<type>.json`; the daemon serves the same text at
//! `GET /v1/schemas/events/<type>.json`, and every event names it in `dataschema`.
//!
//! The test below fails when the committed files differ from what the types generate. After
//! changing a type, regenerate them with
//! `DESKGATE_WRITE_SCHEMAS=1 cargo test --lib events::data::schema`.

use std::path::Path;

use schemars::generate::SchemaSettings;
use schemars::Schema;

use super::schema_for_type;
use crate::events::EventType;

/// The path, below the instance's `source`, where an event type's schema is served.
pub fn path(event_type: EventType) -> String {
    let mut path = String::new();
    push_path(&mut path, event_type);
    path
}

/// Appends [`path`] to `out`.
pub fn push_path(out: &mut String, event_type: EventType) {
    out.push_str("/v1/schemas/events/");
    out.push_str(event_type.as_str());
    out.push_str(".json");
}

/// The JSON Schema (draft 2020-12) of an event type's `data`, as the events serialise it.
pub fn schema(event_type: EventType) -> Schema {
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut schema = schema_for_type(event_type, generator);
    if event_type.carries_ticket_number() {
        // The outbox adds the ticket's number to ticket and conversation events (see
        // `outbox::with_ticket_number`), so the types do not carry it.
        if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
            properties.entry("ticket_number").or_insert_with(|| {
                serde_json::json!({
                    "description": "The number people name the ticket by (#1042), unique \
                        in this deskgate instance; absent when the ticket has none (opened \
                        before numbers existed, or already gone).",
                    "type": "integer",
                    "format": "uint64",
                    "minimum": 1,
                })
            });
        }
    }
    schema.insert("title".to_owned(), event_type.as_str().into());
    schema
}

/// The schema as served and committed: pretty JSON with a final newline.
pub fn text(event_type: EventType) -> String {
    let mut text =
        serde_json::to_string_pretty(&schema(event_type)).expect("a schema is plain JSON");
    text.push('\n');
    text
}

/// Writes every event type's schema into `dir` (`schemas/events`).
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for &event_type in EventType::ALL {
        let file = dir.join(format!("{}.json", event_type.as_str()));
        std::fs::write(file, text(event_type))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/events")
    }

    /// The committed schemas are what the types generate, one file per event type and no
    /// other file. `DESKGATE_WRITE_SCHEMAS=1` rewrites them instead.
    #[test]
    fn committed_schemas_are_what_the_types_generate() {
        let dir = committed();
        if std::env::var_os("DESKGATE_WRITE_SCHEMAS").is_some() {
            write_all(&dir).unwrap();
        }
        let mut stale = Vec::new();
        for &event_type in EventType::ALL {
            let file = dir.join(format!("{}.json", event_type.as_str()));
            match std::fs::read_to_string(&file) {
                Ok(found) if found == text(event_type) => {}
                Ok(_) => stale.push(format!("{} differs", file.display())),
                Err(error) => stale.push(format!("{}: {error}", file.display())),
            }
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let known = EventType::ALL
                .iter()
                .any(|t| name == format!("{}.json", t.as_str()));
            if !known {
                stale.push(format!("{name} is the schema of no event type"));
            }
        }
        assert!(
            stale.is_empty(),
            "{stale:#?}\nregenerate: DESKGATE_WRITE_SCHEMAS=1 cargo test --lib events::data::schema"
        );
    }

    /// `docs/events.md` documents exactly the event types there are: every type in its table
    /// has a Rust type (an [`EventType`], hence data and a schema), and every type has a row.
    #[test]
    fn docs_events_md_lists_exactly_the_event_types() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/events.md");
        let text = std::fs::read_to_string(docs).unwrap();
        let documented: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("| `deskgate."))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        let mut wrong = Vec::new();
        for name in &documented {
            let name = format!("deskgate.{name}");
            if EventType::parse(&name).is_none() {
                wrong.push(format!("{name} is documented but has no Rust type"));
            }
        }
        for &event_type in EventType::ALL {
            let name = event_type.as_str();
            if !documented.iter().any(|d| format!("deskgate.{d}") == name) {
                wrong.push(format!("{name} has no row in docs/events.md"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn every_schema_is_an_object_schema_with_a_description() {
        for &event_type in EventType::ALL {
            let schema = schema(event_type);
            let json = schema.as_value();
            let described = json.get("description").is_some()
                || json.get("anyOf").is_some_and(|any| any.is_array());
            assert!(described, "{} has no description", event_type.as_str());
        }
    }
}
