//! Helpers shared by the messaging end-to-end tests: secrets, signing, posting, events.

use std::path::{Path, PathBuf};

use serde_json::Value;
pub use test_kit::meta::sign;
use test_kit::Daemon;

pub const APP_SECRET: &str = "test-app-secret-1234";
pub const VERIFY_TOKEN: &str = "test-verify-token-5678";
pub const SHARED_SECRET: &str = "test-shared-secret-90";

/// Writes the test secrets into `dir` and returns the `meta` inline table for a channel. The
/// app secret file ends in a newline, as an editor leaves it: deskgate trims it.
pub fn meta_table(dir: &Path) -> String {
    test_kit::meta::write_secrets(dir, &format!("{APP_SECRET}\n"), VERIFY_TOKEN).unwrap()
}

/// Writes the shared secret for chat and form channels and returns its path.
pub fn shared_secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("shared_secret");
    std::fs::write(&path, SHARED_SECRET).unwrap();
    path
}

/// Posts a Meta webhook body to a channel, signed with the test app secret.
pub async fn post_meta(
    client: &reqwest::Client,
    daemon: &Daemon,
    channel: &str,
    body: &[u8],
) -> (u16, Value) {
    let response = client
        .post(daemon.url(&format!("/hooks/{channel}")))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(APP_SECRET, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The kinds of the items a hook answer lists.
pub fn kinds(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["kind"].as_str().unwrap().to_owned())
        .collect()
}

pub fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}
