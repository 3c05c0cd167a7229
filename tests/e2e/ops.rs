//! Operations: what systemd, Prometheus and an operator see. The control plane refuses anyone
//! without a token, systemd hears READY and STOPPING, the control listener can be split from
//! the public one, and the shipped unit file verifies where docs/operating.md installs the binary.
//! SIGHUP reloads are in `ops/reload.rs`, `deskgate backup` in `ops/backup.rs`, readiness and
//! metric values in `ops/watch.rs`, the scrape against promtool and the docs in
//! `ops/prometheus.rs`, check-config and secrets in `ops/config.rs`.

mod backup;
mod config;
mod prometheus;
mod reload;
mod watch;

use std::collections::BTreeMap;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use test_kit::{api_message, daemon_bin, eventually, free_port, Daemon};

const TOKEN: &str = "ops-test-token-0123456789";

/// Every sample of one metric in a Prometheus text page, by its labels (`k=v` pairs, sorted,
/// comma-separated; empty without labels). Every series is on the page at zero from start-up,
/// so tests of what happened compare values, not presence. Panics when the page does not parse.
fn metric_values(text: &str, name: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                // A histogram's value is its count of observations (the `+Inf` bucket).
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 1.0,
            };
            (labels.join(","), value)
        })
        .collect()
}

/// Posts raw bytes to one of the daemon's paths and returns the answer's status.
async fn post_raw(daemon: &Daemon, path: &str, content_type: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(daemon.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A control API answer's JSON, with the test token.
async fn control_get(daemon: &Daemon, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(daemon.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn token_config(dir: &std::path::Path) -> String {
    let file = dir.join("control.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    format!("[control]\ntoken_files = [\"{}\"]\n", file.display())
}

#[tokio::test]
async fn the_events_api_needs_a_token_when_required_and_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A config of our own: the harness's turns the events token off.
    let control_port = free_port();
    let config = dir.path().join("deskgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\ncontrol_listen = \"127.0.0.1:{control_port}\"\n\
             [state]\ndir = \"{}\"\n{}\n[channels.api]\nkind = \"api\"\n",
            free_port(),
            dir.path().join("state").display(),
            token_config(dir.path())
        ),
    )
    .unwrap();
    let mut child = spawn(&config, &[]);
    let control = format!("http://127.0.0.1:{control_port}");
    let client = reqwest::Client::new();
    wait_healthy(&client, &format!("{control}/metrics")).await;
    for auth in [None, Some("Bearer nope")] {
        let mut request = client.get(format!("{control}/v1/events"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(!response.text().await.unwrap().contains(TOKEN));
    }
    let ok = client
        .get(format!("{control}/v1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The hooks are not served on the control listener.
    let hook = client
        .post(format!("{control}/hooks/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 404);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_public_listener_serves_hooks_but_not_events_or_control() {
    let dir = tempfile::tempdir().unwrap();
    let (public, control) = (free_port(), free_port());
    let config = dir.path().join("deskgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{public}\"\ncontrol_listen = \"127.0.0.1:{control}\"\n\
             [state]\ndir = \"{}\"\n[channels.api]\nkind = \"api\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let mut child = spawn(&config, &[]);
    let client = reqwest::Client::new();
    let public = format!("http://127.0.0.1:{public}");
    wait_healthy(&client, &format!("{public}/healthz")).await;
    for path in [
        "/v1/events",
        "/v1/status",
        "/metrics",
        "/v1/control/quarantine",
    ] {
        let response = client.get(format!("{public}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path} must not be public");
    }
    let posted = client
        .post(format!("{public}/hooks/api"))
        .json(&api_message("m1", "t1", "ana@example.com", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn systemd_hears_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = dir.path().join("deskgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[state]\ndir = \"{}\"\n",
            free_port(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let mut child = spawn(&config, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// The binary's path in the install steps of `docs/operating.md` (`sudo install ...
/// target/release/deskgate PATH`).
fn documented_install_path() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operating.md")).unwrap();
    readme
        .lines()
        .find_map(|l| l.strip_prefix("sudo install -m 0755 target/release/deskgate "))
        .expect(
            "docs/operating.md installs the binary with `sudo install -m 0755 target/release/deskgate`",
        )
        .trim()
        .to_owned()
}

#[test]
fn the_unit_file_verifies_and_is_hardened() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/deskgate.service");
    let unit = std::fs::read_to_string(path).unwrap();
    let installed = documented_install_path();
    let exec_start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|command| command.split_whitespace().next())
        .expect("the unit has an ExecStart=");
    assert_eq!(
        exec_start, installed,
        "the unit runs the binary docs/operating.md installs"
    );
    // Verified as shipped, unedited: systemd-analyze checks that the binary exists, so in a
    // mount namespace of its own the binary under test is mounted at the documented path (a
    // tmpfs over its directory, so nothing on the machine changes). As root that needs only a
    // mount namespace; otherwise a user namespace maps the caller to root in it.
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    let mut verify = Command::new("unshare");
    if String::from_utf8_lossy(&uid).trim() != "0" {
        verify.arg("--map-root-user");
    }
    let verify = verify
        .args(["--mount", "sh", "-ec"])
        .arg(
            "mount -t tmpfs deskgate-test \"$(dirname \"$1\")\"; touch \"$1\"; \
             mount --bind \"$2\" \"$1\"; exec systemd-analyze verify \"$3\"",
        )
        .args(["sh", &installed])
        .arg(daemon_bin())
        .arg(path)
        .output()
        .expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify: {stderr}");

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for deskgate.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in: {report}"));
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0");
}

fn spawn(config: &std::path::Path, env: &[(&str, &str)]) -> std::process::Child {
    let log = std::fs::File::create(config.with_extension("log")).unwrap();
    let mut command = Command::new(daemon_bin());
    command
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

async fn wait_healthy(client: &reqwest::Client, url: &str) {
    eventually("the daemon to answer", Duration::from_secs(20), || {
        let request = client.get(url).send();
        async move { request.await.is_ok() }
    })
    .await;
}
