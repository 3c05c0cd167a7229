//! Every public webhook payload in the shared corpus, signed and posted to a running daemon:
//! each produces the expected kinds and count of items, and posting it again produces nothing
//! new. Each payload goes to a channel of its own, because the examples reuse ids such as
//! `wamid.xyzxyz` for unrelated cases.

use std::path::{Path, PathBuf};

use crate::messaging_support::{kinds, meta_table, of_type, post_meta};
use serde_json::{json, Value};
use test_kit::{corpus, Daemon};

/// One payload, the channel kind it is for, and the item kinds expected from it.
struct Case {
    name: String,
    kind: &'static str,
    body: Vec<u8>,
    expected: Vec<&'static str>,
}

/// pywa names each payload; the kind follows from the file, with the exceptions named.
fn whatsapp_expected(file: &str, case: &str) -> Vec<&'static str> {
    let kind = match (file, case) {
        ("message", "reaction" | "unreaction_empty" | "unreaction_no_emoji") => "reaction",
        ("message", "interactive_message_with_err") => "postback",
        ("message" | "edited_message", _) => "message",
        ("message_status", _) => "delivery_status",
        ("outgoing_message", _) => "echo",
        (
            "callback_button" | "callback_selection" | "flow_completion" | "call_permission_update",
            _,
        ) => "postback",
        (
            "account_update"
            | "call_connect"
            | "call_status"
            | "call_terminate"
            | "system"
            | "deleted_message"
            | "template_category_update"
            | "template_components_update"
            | "template_quality_update"
            | "template_status_update"
            | "user_marketing_preferences",
            _,
        ) => "other",
        _ => panic!("no expectation for pywa {file}/{case}: add one"),
    };
    vec![kind]
}

fn pywa_cases(root: &Path) -> Vec<Case> {
    let dir = root.join("webhooks/whatsapp/pywa/tests/data/updates");
    let mut cases = Vec::new();
    for path in json_files(&dir) {
        let file = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let named: serde_json::Map<String, Value> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (case, payload) in named {
            cases.push(Case {
                expected: whatsapp_expected(&file, &case),
                name: format!("pywa/{file}/{case}"),
                kind: "whatsapp",
                body: serde_json::to_vec(&payload).unwrap(),
            });
        }
    }
    cases
}

fn raw_case(name: String, kind: &'static str, path: &Path, expected: Vec<&'static str>) -> Case {
    Case {
        name,
        kind,
        body: std::fs::read(path).unwrap(),
        expected,
    }
}

fn other_cases(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let js = root.join("webhooks/whatsapp/whatsapp-api-js/test/payloads/v25");
    for (file, kind) in [
        ("incoming", "message"),
        ("sent", "delivery_status"),
        ("delivered", "delivery_status"),
        ("read", "delivery_status"),
    ] {
        let path = js.join(format!("{file}.json"));
        cases.push(raw_case(
            format!("js/{file}"),
            "whatsapp",
            &path,
            vec![kind],
        ));
    }
    let mseri = root.join("webhooks/messenger/mseri/test-files");
    for (file, kind) in [
        ("wsAuthRequest", "other"),
        ("wsDeliveryRequest", "delivery_status"),
        ("wsPostbackRequest", "postback"),
        ("wsStructuredMessageRequest", "message"),
        ("wsTextMessageRequest", "message"),
    ] {
        let path = mseri.join(format!("{file}.json"));
        cases.push(raw_case(
            format!("mseri/{file}"),
            "messenger",
            &path,
            vec![kind],
        ));
    }
    let bot = root.join("webhooks/messenger/botbuilder/tests/Adapters/Microsoft.Bot.Builder.Adapters.Facebook.Tests/Files");
    for (file, expected) in [
        ("Payload", vec!["message"]),
        ("RequestResponse", vec!["message"]),
        ("PayloadWithReferral", vec!["other"]),
        ("PayloadWithPassThreadControl", vec!["other"]),
        ("PayloadWithRequestThreadControl", vec!["other"]),
        ("PayloadWithTakeThreadControl", vec!["other"]),
        ("PayloadWithStandby", vec!["message", "other", "other"]),
    ] {
        let path = bot.join(format!("{file}.json"));
        cases.push(raw_case(
            format!("botbuilder/{file}"),
            "messenger",
            &path,
            expected,
        ));
    }
    // Bare events, wrapped in one entry as Meta would send them; the messages among them carry
    // no `mid`, so they cannot be messages and are recorded as other items.
    let bare: Value = serde_json::from_str(
        std::fs::read_to_string(bot.join("FacebookMessages.json"))
            .unwrap()
            .trim_start_matches('\u{feff}'),
    )
    .unwrap();
    let wrapped =
        json!({ "object": "page", "entry": [{ "id": "page-1", "time": 1, "messaging": bare }] });
    cases.push(Case {
        name: "botbuilder/FacebookMessages (wrapped)".into(),
        kind: "messenger",
        body: serde_json::to_vec(&wrapped).unwrap(),
        expected: vec!["other", "other", "other", "other", "postback", "other"],
    });
    cases
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_corpus_payload_is_recorded_once_with_the_expected_items() {
    let root = corpus();
    let mut cases = pywa_cases(&root);
    // The MANIFEST counts 75; the files hold 74 named payloads at the pinned commit.
    assert!(
        cases.len() >= 74,
        "pywa holds 74 named payloads, found {}",
        cases.len()
    );
    cases.extend(other_cases(&root));

    let dir = tempfile::tempdir().unwrap();
    let meta = meta_table(dir.path());
    let channels: String = cases
        .iter()
        .enumerate()
        .map(|(i, case)| format!("[channels.c{i}]\nkind = \"{}\"\n{meta}\n\n", case.kind))
        .collect();
    let daemon = Daemon::start(dir.path(), &channels).await;
    let client = reqwest::Client::new();

    for (i, case) in cases.iter().enumerate() {
        let (status, answer) = post_meta(&client, &daemon, &format!("c{i}"), &case.body).await;
        assert_eq!(status, 200, "{}: {answer}", case.name);
        assert_eq!(kinds(&answer), case.expected, "{}: {answer}", case.name);
        let items = answer["items"].as_array().unwrap();
        assert!(
            items.iter().all(|item| item["duplicate"] == false),
            "{}: distinct items in one payload: {answer}",
            case.name
        );
    }
    daemon.settled().await;
    let first = daemon.all_events().await;
    for kind in [
        "deskgate.ticket.created",
        "deskgate.message.delivery_status",
        "deskgate.channel.event",
    ] {
        assert!(!of_type(&first, kind).is_empty(), "no {kind} events");
    }

    for (i, case) in cases.iter().enumerate() {
        let (status, answer) = post_meta(&client, &daemon, &format!("c{i}"), &case.body).await;
        assert_eq!(
            status, 200,
            "{}: a resend is acknowledged: {answer}",
            case.name
        );
        assert_eq!(answer["duplicate"], true, "{}: {answer}", case.name);
        assert_eq!(kinds(&answer), case.expected, "{}", case.name);
    }
    daemon.settled().await;
    let second = daemon.all_events().await;
    assert_eq!(
        first.len(),
        second.len(),
        "a resent payload has no second effect"
    );
}

#[test]
fn inspect_webhook_prints_the_items_of_a_payload() {
    let root = corpus();
    let incoming = root.join("webhooks/whatsapp/whatsapp-api-js/test/payloads/v25/incoming.json");
    let output = std::process::Command::new(test_kit::daemon_bin())
        .args(["inspect", "webhook", "--channel", "whatsapp"])
        .arg(&incoming)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let items: Value = serde_json::from_slice(&output.stdout).unwrap();
    let item = &items[0];
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(item["kind"], "message");
    assert_eq!(item["external_id"], "ABGGFlA5Fpa");
    assert_eq!(
        item["sender"],
        json!({ "kind": "phone", "number": "+16315551181" })
    );
    assert_eq!(item["text"], "this is a text message");
    assert_eq!(item["attachments"], json!([]));
    assert_eq!(item["timestamp"], "2017-09-08T20:36:28Z");

    let delivery = root.join("webhooks/messenger/mseri/test-files/wsDeliveryRequest.json");
    let output = std::process::Command::new(test_kit::daemon_bin())
        .args(["inspect", "webhook", "--channel", "messenger"])
        .arg(&delivery)
        .output()
        .unwrap();
    let items: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(items[0]["kind"], "delivery_status");
    assert_eq!(
        items[0]["message_ids"],
        json!(["mid.1458668856218:ed81099e15d3f4f233"])
    );

    let output = std::process::Command::new(test_kit::daemon_bin())
        .args([
            "inspect",
            "webhook",
            "--channel",
            "whatsapp",
            "/nonexistent.json",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
}
