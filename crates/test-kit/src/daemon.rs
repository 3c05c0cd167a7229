//! The real `deskgate` binary as a child process: started with a config file on a loopback
//! port, killed with SIGKILL or stopped with SIGTERM, restarted on the same state, and read from
//! the outside (status, the whole outbox).
//!
//! The constructors that write a test's config are in the crate's root ([`Daemon::start`]); the
//! rig and the bench write their own and call [`Daemon::launch`].

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A loopback port that was free a moment ago, and that this process has not handed out
/// before: every end-to-end suite runs in one process, side by side, and a port freed here can
/// come back from the kernel to the next caller before the first one's server has bound it.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        if GIVEN.lock().expect("no panic while held").insert(port) {
            return port;
        }
    }
}

/// Waits (blocking) until something accepts connections on the loopback `port`; panics
/// naming `what` after 20 s.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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

pub struct Daemon {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    bin: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    /// Called on every event [`Daemon::events_after`] reads: a daemon the tests start with
    /// [`Daemon::start`] checks each against its schema ([`crate::schemas::check`]); the rig's
    /// and the bench's check nothing.
    pub check_event: Option<fn(&Value)>,
}

impl Daemon {
    /// Starts `bin` with the config file `config`, which must listen on `addr`; the log goes to
    /// `dir/deskgate.log`. Returns once it answers `/healthz`.
    pub async fn launch(bin: &Path, dir: &Path, config: PathBuf, addr: SocketAddr) -> Daemon {
        let mut daemon = Daemon {
            addr,
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            config,
            child: None,
            check_event: None,
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
            .expect("the daemon's log file opens");
        let child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second log handle"))
            .stderr(log)
            .spawn()
            .expect("the deskgate binary starts");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let url = self.url("/healthz");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
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
        child.kill().expect("SIGKILL is delivered");
        child.wait().expect("the killed child is reaped");
    }

    /// SIGTERM, and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .expect("SIGTERM is delivered");
        child.wait().expect("the child is reaped")
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
                let Ok(status) = response.json::<Value>().await else {
                    return false;
                };
                status["processor"]["cursor"] == status["journal"]["durable_seq"]
            }
        })
        .await;
    }

    /// Every event in the outbox, in order.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        self.events_after(&mut events).await;
        events
    }

    /// Appends to `events` every outbox event after the last one it holds (all of them when it
    /// is empty): a reader that follows a growing outbox without reading it again.
    pub async fn events_after(&self, events: &mut Vec<Value>) {
        let client = reqwest::Client::new();
        let mut after = events
            .last()
            .and_then(|e| e["sequence"].as_str())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        loop {
            let page: Value = client
                .get(self.url(&format!("/v1/events?after={after}&limit=1000")))
                .send()
                .await
                .expect("the events API answers")
                .json()
                .await
                .expect("an events page is JSON");
            let batch = page["events"].as_array().expect("a page of events").clone();
            if batch.is_empty() {
                return;
            }
            after = page["next"].as_u64().expect("the page's next position");
            if let Some(check) = self.check_event {
                batch.iter().for_each(check);
            }
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
        // A failing test's daemon log lives in a temporary directory about to be removed:
        // its end goes to the test's output, which the harness shows for a failure (a flake
        // in CI is then diagnosable from the CI log alone).
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "deskgate's log in {} (its last {} lines):\n{}",
                self.dir.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// How much of a failing test's daemon log [`Daemon`]'s drop prints.
const LOG_TAIL_LINES: usize = 80;
