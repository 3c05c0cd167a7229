//! Runs the real `deskgate` binary for end-to-end tests: a temporary state directory, a config
//! written for the test, a free loopback port, and helpers to post messages and read events.
#![allow(dead_code)] // each test binary uses a different part of this harness

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_deskgate");

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `condition` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Extra lines for the `[server]` and `[state]` tables of a test's config.
#[derive(Default, Clone, Copy)]
pub struct Tables<'a> {
    pub server: &'a str,
    pub state: &'a str,
}

pub struct Daemon {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Writes a config into `dir` (state under `dir/state`) with an API channel `api`, plus
    /// `extra` TOML, and starts the daemon on a free port.
    pub async fn start(dir: &Path, extra: &str) -> Daemon {
        Daemon::start_with(dir, Tables::default(), extra).await
    }

    /// Like [`Daemon::start`], with extra lines for the tables the harness writes itself.
    pub async fn start_with(dir: &Path, tables: Tables<'_>, extra: &str) -> Daemon {
        let Tables { server, state } = tables;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = dir.join("deskgate.toml");
        let text = format!(
            "[server]\nlisten = \"{addr}\"\nshutdown_grace_secs = 5\n{server}\n[state]\ndir = \"{}\"\n{state}\n\
             [events]\nrequire_token = false\n\n[log]\nfilter = \"info,deskgate=debug\"\n\n[channels.api]\nkind = \"api\"\nmax_body_bytes = 4096\n\n{extra}",
            dir.join("state").display()
        );
        std::fs::write(&config, text).unwrap();
        let mut daemon = Daemon {
            addr,
            dir: dir.to_owned(),
            config,
            child: None,
        };
        daemon.restart().await;
        daemon
    }

    /// Starts the process again on the same port and state, and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("deskgate.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let client = reqwest::Client::new();
        let url = self.url("/healthz");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "deskgate exited at start-up with {status}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "deskgate did not start; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// kill -9, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait().unwrap()
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("deskgate.log")).unwrap_or_default()
    }

    /// Waits until the processor has applied everything journaled.
    pub async fn settled(&self) {
        let client = reqwest::Client::new();
        let url = self.url("/v1/status");
        eventually("the processor to catch up", Duration::from_secs(60), || {
            let request = client.get(&url).send();
            async move {
                let Ok(response) = request.await else {
                    return false;
                };
                let status: Value = response.json().await.unwrap();
                status["processor"]["cursor"] == status["journal"]["durable_seq"]
            }
        })
        .await;
    }

    /// Every event in the outbox, in order.
    pub async fn all_events(&self) -> Vec<Value> {
        let client = reqwest::Client::new();
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page: Value = client
                .get(self.url(&format!("/v1/events?after={after}&limit=1000")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let batch = page["events"].as_array().unwrap().clone();
            if batch.is_empty() {
                return events;
            }
            after = page["next"].as_u64().unwrap();
            events.extend(batch);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An API channel message.
pub fn api_message(external_id: &str, thread_id: &str, email: &str, text: &str) -> Value {
    json!({
        "external_id": external_id,
        "thread_id": thread_id,
        "from": { "email": email },
        "subject": format!("about {thread_id}"),
        "text": text,
    })
}

/// Sends raw bytes over a fresh TCP connection and returns what came back within the timeout.
pub fn raw_request(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                // Enough to see the status line and the JSON error.
                if response.windows(4).any(|w| w == b"\r\n\r\n") && response.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}
