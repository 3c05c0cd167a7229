//! A real `nats-server -js` on a free loopback port (never the machine's own 4222), stopped
//! and restarted on the same storage, and a reader of a whole JetStream stream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use serde_json::Value;

use super::daemon::{free_port, wait_for_port};

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

    pub fn is_running(&self) -> bool {
        self.child.is_some()
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
        wait_for_port(self.port, "nats-server");
    }

    /// Stops the server (SIGKILL: an outage, not a goodbye).
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL is delivered");
        child.wait().expect("nats-server is reaped");
    }

    /// Every message of `stream`, in stream order: (Nats-Msg-Id, subject, JSON payload).
    pub async fn read_stream(&self, stream: &str) -> Vec<(String, String, Value)> {
        self.read_messages(stream)
            .await
            .into_iter()
            .map(|m| (m.id, m.subject, m.event))
            .collect()
    }

    /// Every message of `stream`, in stream order, with the headers a consumer sees.
    pub async fn read_messages(&self, stream: &str) -> Vec<StreamMessage> {
        let client = async_nats::connect(self.url())
            .await
            .expect("connect to nats-server");
        let js = jetstream::new(client);
        let stream = js.get_stream(stream).await.expect("the stream exists");
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("reader-{}", fastrand::u64(..))),
                ..Default::default()
            })
            .await
            .expect("a pull consumer");
        let mut seen = Vec::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(500)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .expect("a fetch");
            let before = seen.len();
            while let Some(message) = batch.next().await {
                let message = message.expect("a stream message");
                let header = |name: &str| {
                    message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.to_string())
                };
                let id = header(async_nats::header::NATS_MESSAGE_ID.as_ref())
                    .expect("every message carries Nats-Msg-Id");
                let content_type = header("Content-Type");
                let event: Value =
                    serde_json::from_slice(&message.payload).expect("a JSON payload");
                seen.push(StreamMessage {
                    id,
                    subject: message.subject.to_string(),
                    content_type,
                    event,
                });
                message.ack().await.expect("an ack");
            }
            if seen.len() == before {
                return seen;
            }
        }
    }
}

/// One stream message as a consumer sees it.
pub struct StreamMessage {
    /// `Nats-Msg-Id`.
    pub id: String,
    pub subject: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The payload, parsed as JSON.
    pub event: Value,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
