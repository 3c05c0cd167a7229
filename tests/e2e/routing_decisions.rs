//! Table-driven routing decisions: each file under `tests/fixtures/routing/decisions/` holds a
//! channel's rule, a directory snapshot and a contact, and the expected assignee and trace. A
//! file with `repeat` routes that many tickets in a row (the rotation and open-ticket counts
//! carried from one to the next) and checks how they were spread. A run that checked no file
//! fails.

use std::collections::BTreeMap;
use std::path::PathBuf;

use deskgate::config::ChannelRouting;
use deskgate::routing::{decide, Snapshot};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    about: String,
    rules: ChannelRouting,
    snapshot: Snapshot,
    contact: Contact,
    #[serde(default)]
    expect: Option<Expect>,
    #[serde(default)]
    repeat: Option<usize>,
    #[serde(default)]
    expect_counts: BTreeMap<String, usize>,
    #[serde(default)]
    expect_last_trace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Contact {
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    assignee: Option<String>,
    trace: String,
}

fn fixtures() -> Vec<(PathBuf, Fixture)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/routing/decisions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let fixture =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, fixture)
        })
        .collect()
}

/// Routes `repeat` new tickets, as the processor would: the rotation moves to the user picked
/// and the assignee's open-ticket count grows.
fn run_repeated(fixture: &Fixture, times: usize) -> (BTreeMap<String, usize>, String) {
    let mut snapshot = fixture.snapshot.clone();
    let mut counts = BTreeMap::new();
    let mut last_trace = String::new();
    for _ in 0..times {
        let decision = decide(&fixture.rules, &snapshot, fixture.contact.owner.as_deref());
        if let Some(picked) = &decision.picked_by_rotation {
            snapshot.last_picked = Some(picked.clone());
        }
        let who = decision
            .assignee
            .clone()
            .unwrap_or_else(|| "unassigned".to_owned());
        if let Some(assignee) = &decision.assignee {
            *snapshot.open_tickets.entry(assignee.clone()).or_default() += 1;
        }
        *counts.entry(who).or_default() += 1;
        last_trace = decision.trace;
    }
    (counts, last_trace)
}

#[test]
fn every_fixture_decides_as_expected() {
    let fixtures = fixtures();
    let mut checked = 0;
    for (path, fixture) in &fixtures {
        let name = path.file_name().unwrap().to_string_lossy();
        if let Some(expect) = &fixture.expect {
            let decision = decide(
                &fixture.rules,
                &fixture.snapshot,
                fixture.contact.owner.as_deref(),
            );
            assert_eq!(
                (decision.assignee.as_deref(), decision.trace.as_str()),
                (expect.assignee.as_deref(), expect.trace.as_str()),
                "{name}: {}",
                fixture.about
            );
            // Pure: the same inputs decide the same way.
            let again = decide(
                &fixture.rules,
                &fixture.snapshot,
                fixture.contact.owner.as_deref(),
            );
            assert_eq!(decision, again, "{name}");
            checked += 1;
        }
        if let Some(times) = fixture.repeat {
            let (counts, last_trace) = run_repeated(fixture, times);
            assert_eq!(counts, fixture.expect_counts, "{name}: {}", fixture.about);
            if let Some(expected) = &fixture.expect_last_trace {
                assert_eq!(&last_trace, expected, "{name}");
            }
            checked += 1;
        }
        assert!(
            fixture.expect.is_some() || fixture.repeat.is_some(),
            "{name} expects nothing"
        );
    }
    assert!(
        checked >= 10,
        "only {checked} routing fixtures were checked"
    );
    assert_eq!(checked, fixtures.len(), "every fixture file is checked");
}
