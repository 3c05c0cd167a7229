//! Checks every event the end-to-end suites read against the committed JSON Schema of its
//! type (`schemas/events/<type>.json`), with its envelope's `dataschema` naming that schema.
//! [`Daemon::events_after`](super::Daemon::events_after) calls [`check`] on each event it
//! reads, so every suite that reads events through the harness checks them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

/// The folder of the committed schemas (`schemas/events` of the daemon's package, the
/// workspace's root).
pub fn schema_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/events"))
}

fn validators() -> &'static HashMap<String, jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<String, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let mut validators = HashMap::new();
        for entry in std::fs::read_dir(schema_dir()).expect("schemas/events is readable") {
            let path = entry.unwrap().path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(event_type) = name.strip_suffix(".json") else {
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let schema: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("{}: not a valid schema: {e}", path.display()));
            validators.insert(event_type.to_owned(), validator);
        }
        validators
    })
}

/// Panics unless `event`'s `data` is valid against the committed schema of its type and its
/// `dataschema` names that schema below its `source`.
pub fn check(event: &Value) {
    let event_type = event["type"].as_str().expect("an event has a type");
    let Some(validator) = validators().get(event_type) else {
        panic!("event type {event_type} has no schema in schemas/events: {event}");
    };
    let errors: Vec<String> = validator
        .iter_errors(&event["data"])
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "a {event_type} event does not match its schema: {errors:#?}\n{event}"
    );
    let source = event["source"].as_str().expect("an event has a source");
    let expected = format!("{source}/v1/schemas/events/{event_type}.json");
    assert_eq!(event["dataschema"], expected.as_str(), "{event}");
    record_emitted(event_type);
}

/// Where the suites note each event type they saw, one empty file per type
/// (`target/tmp/emitted-event-types`): after the whole suite, `scripts/test.sh` fails on a type
/// with a schema that no end-to-end test saw.
pub fn emitted_dir() -> PathBuf {
    crate::target_tmpdir().join("emitted-event-types")
}

fn record_emitted(event_type: &str) {
    static SEEN: OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if !seen.lock().unwrap().insert(event_type.to_owned()) {
        return;
    }
    let dir = emitted_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(event_type), b"").unwrap();
}
