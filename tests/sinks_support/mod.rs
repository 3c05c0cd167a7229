//! Helpers for the sink tests: a real `nats-server` with JetStream on a free loopback port,
//! and the control API's bearer token.
#![allow(dead_code)] // each sink test uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;

pub const TOKEN: &str = "sink-test-token-0123456789";

/// `[control]` with a token file written into `dir`.
pub fn control_toml(dir: &Path) -> String {
    let path = dir.join("control.token");
    std::fs::write(&path, TOKEN).unwrap();
    format!("[control]\ntoken_files = [\"{}\"]\n", path.display())
}

/// A `nats-server -js` child process; killed on drop.
pub struct NatsServer {
    pub port: u16,
    store_dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server storing JetStream data under `dir`.
    pub fn start(dir: &Path) -> NatsServer {
        let mut server = NatsServer {
            port: free_port(),
            store_dir: dir.join("jetstream"),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and storage; waits until it accepts.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/test.sh: need nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGKILL: an outage, not a goodbye).
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sinks section of `GET /v1/status`.
pub async fn sink_status(daemon: &crate::common::Daemon, sink: &str) -> serde_json::Value {
    let status: serde_json::Value = reqwest::get(daemon.url("/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["sinks"][sink].clone()
}

/// The last event seq the outbox holds.
pub async fn outbox_last(daemon: &crate::common::Daemon) -> u64 {
    let status: serde_json::Value = reqwest::get(daemon.url("/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["outbox"]["last_seq"].as_u64().unwrap()
}

/// Waits until the sink's cursor reaches the end of the outbox.
pub async fn caught_up(daemon: &crate::common::Daemon, sink: &str, within: Duration) {
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
