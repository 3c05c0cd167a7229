//! deskgate's real-peer test harness, shared by the end-to-end tests (`tests/e2e`) and the bench
//! (`crates/bench`): the real `deskgate` binary as a child process ([`Daemon`]) with a config
//! written for the test, a free loopback port and a temporary state directory; the real peers it
//! talks to ([`dovecot`], [`smtpd`], [`nats`]); a size-limited disk ([`tmpfs`]) and a power cut
//! ([`lazyfs`]); the check of every event read against its committed schema ([`schemas`]); and
//! the long-running drivers on top of them: [`rig`] (every channel kind and peer at once),
//! [`mixed`] (its load), [`chaos`] (that load under faults) and [`soak`] (that load for hours).

pub mod chaos;
pub mod daemon;
pub mod dovecot;
pub mod lazyfs;
pub mod meta;
pub mod mixed;
pub mod nats;
pub mod rig;
pub mod schemas;
pub mod smtpd;
pub mod soak;
pub mod tmpfs;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use daemon::{eventually, free_port, Daemon};
use serde_json::{json, Value};

/// The `deskgate` binary the harness starts: `DESKGATE_TEST_BIN` when set, else the one Cargo
/// built beside the running executable (`target/<profile>/deskgate`; a test binary runs from
/// `target/<profile>/deps/`, the bench from `target/<profile>/`). Only the daemon's own package
/// is told where Cargo put its binary, and this crate is not that package. Several worktrees
/// building into one target directory replace `target/debug/deskgate` under each other's
/// running tests; a copy taken right after the build keeps a run on its own code.
pub fn daemon_bin() -> PathBuf {
    std::env::var_os("DESKGATE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("deskgate"))
}

/// The shared corpus of real mail and webhooks the suites read in place: `$DESKGATE_CORPUS`,
/// else `shared/corpus` beside the repository. Missing is a failure, never a skip.
pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("DESKGATE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    assert!(
        dir.is_dir(),
        "the shared corpus is missing at {}: set DESKGATE_CORPUS or put it beside the repository",
        dir.display()
    );
    dir
}

/// `target/<profile>`: the folder of the running executable, or its parent for one in `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable has a path");
    let dir = exe.parent().expect("an executable is in a folder");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent()
            .expect("deps/ is in the profile's folder")
            .to_owned()
    } else {
        dir.to_owned()
    }
}

/// Cargo's `target/tmp` (what it names `CARGO_TARGET_TMPDIR` for a test of its own package).
pub fn target_tmpdir() -> PathBuf {
    let profile = profile_dir();
    profile
        .parent()
        .expect("the profile's folder is in the target folder")
        .join("tmp")
}

/// Extra lines for the `[server]` and `[state]` tables of a test's config.
#[derive(Default, Clone, Copy)]
pub struct Tables<'a> {
    pub server: &'a str,
    pub state: &'a str,
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
        let mut daemon = Daemon::launch(&daemon_bin(), dir, config, addr).await;
        daemon.check_event = Some(schemas::check);
        daemon
    }

    /// A control API request (`method` such as `"PUT"`, `path` such as
    /// `/v1/control/tickets/{id}/status`) with the bearer `token` and an optional JSON body;
    /// returns the status and the answer as JSON (a JSON string when it is not JSON).
    pub async fn control(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The `support` pipeline many tests use: new, waiting on us, closed; a customer's reply moves
/// a ticket to waiting on us, an agent's mail moves nothing.
pub const SUPPORT_PIPELINE: &str = r#"
[routing.pipelines.support]
label = "Support"
statuses = [
  { id = "new", label = "New", open = true },
  { id = "waiting_on_us", label = "Waiting on us", open = true },
  { id = "closed", label = "Closed", open = false },
]
[routing.pipelines.support.triggers]
customer_replied = { enabled = true, target = "waiting_on_us" }
agent_emailed = { enabled = false }
"#;

/// Pushes raw mail to an email channel's hook, as an MTA does; returns the answer's status.
pub async fn push_mail(daemon: &Daemon, channel: &str, raw: impl Into<reqwest::Body>) -> u16 {
    reqwest::Client::new()
        .post(daemon.url(&format!("/hooks/{channel}")))
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// What `deskgate check-config` said about a file.
pub struct CheckConfig {
    /// It exited 0: the config is valid (warnings, if any, are on stderr).
    pub ok: bool,
    /// 0 for a valid config, 64 (EX_USAGE) for a wrong one, 1 for one it could not read.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CheckConfig {
    /// Both streams, for the checks that care whether a line shows at all (a secret must
    /// show on neither), not where.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// `deskgate check-config FILE`, with `--state DIR` when `state` is given.
pub fn check_config(file: &Path, state: Option<&Path>) -> CheckConfig {
    let mut command = std::process::Command::new(daemon_bin());
    command.arg("check-config").arg(file);
    if let Some(state) = state {
        command.arg("--state").arg(state);
    }
    let output = command.output().expect("the deskgate binary runs");
    CheckConfig {
        ok: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
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
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request).unwrap();
    read_answer(stream, timeout).0
}

/// Reads one answer from `stream` within the timeout: what arrived (enough to see the status
/// line and the JSON error), and how the read ended, for a failure's message.
pub fn read_answer(mut stream: std::net::TcpStream, timeout: Duration) -> (String, String) {
    use std::io::Read;
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = loop {
        match stream.read(&mut buf) {
            Ok(0) => break "was closed by the daemon".to_owned(),
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.windows(4).any(|w| w == b"\r\n\r\n") && response.ends_with(b"}") {
                    break "answered".to_owned();
                }
            }
            Err(error) => break format!("failed to read: {error} ({:?})", error.kind()),
        }
    };
    (String::from_utf8_lossy(&response).into_owned(), ended)
}
