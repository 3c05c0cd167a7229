//! Helpers for the sink tests: the control API's bearer token and the sinks' status (the real
//! `nats-server` is `test_kit::nats`).

use std::path::Path;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "sink-test-token-0123456789";

/// `[control]` with a token file written into `dir`.
pub fn control_toml(dir: &Path) -> String {
    let path = dir.join("control.token");
    std::fs::write(&path, TOKEN).unwrap();
    format!("[control]\ntoken_files = [\"{}\"]\n", path.display())
}

/// The sinks section of `GET /v1/status`.
pub async fn sink_status(daemon: &test_kit::Daemon, sink: &str) -> serde_json::Value {
    let status: serde_json::Value = reqwest::get(daemon.url("/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["sinks"][sink].clone()
}

/// The last event seq the outbox holds.
pub async fn outbox_last(daemon: &test_kit::Daemon) -> u64 {
    let status: serde_json::Value = reqwest::get(daemon.url("/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["outbox"]["last_seq"].as_u64().unwrap()
}

/// Waits until the sink's cursor reaches the end of the outbox.
pub async fn caught_up(daemon: &test_kit::Daemon, sink: &str, within: Duration) {
    daemon.settled().await;
    let deadline = Instant::now() + within;
    loop {
        let last = outbox_last(daemon).await;
        let status = sink_status(daemon, sink).await;
        if status["cursor"].as_u64() == Some(last) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sink {sink} did not catch up with {last}: {status}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
