//! `deskgate check-config` as an operator runs it: every shipped config passes, broken
//! operations settings fail with their messages; and no secret ever shows, in check-config's
//! output, the daemon's log, its answers or its metrics.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::json;

use test_kit::dovecot::Dovecot;
use test_kit::{check_config, eventually, free_port, Daemon};

#[test]
fn every_shipped_config_passes_check_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let check = check_config(&path, None);
            assert!(check.ok, "{}: {}", path.display(), check.output());
            assert!(check.stdout.contains(": ok"), "{}", check.output());
            checked += 1;
        }
    }
    assert!(checked > 0, "no shipped config was checked");
}

#[test]
fn broken_operations_settings_fail_check_config_with_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let empty = file("empty.token", "\n");
    let short = file("short.token", "abc\n");
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "[server]\nlisten = \"127.0.0.1:8080\"\ncontrol_listen = \"127.0.0.1:8080\"\n".into(),
            vec!["server.control_listen: must differ from server.listen".into()],
        ),
        (
            "[server]\nlisten = \"127.0.0.1\"\n".into(),
            vec!["server.listen: invalid socket address syntax (line 2)".into()],
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n".into(),
            vec!["server.trusted_proxies[0]: invalid IP address syntax (line 2)".into()],
        ),
        (
            "[server]\nlisten = \"0.0.0.0:8080\"\n[events]\nrequire_token = false\n".into(),
            vec!["events.require_token: may be false only when the events API listens on a loopback address".into()],
        ),
        (
            format!(
                "[control]\ntoken_files = [\"{}\", \"{}\", \"/nonexistent/token\"]\n",
                empty.display(),
                short.display()
            ),
            vec![
                format!("control.token_files[0]: secret file {} is empty", empty.display()),
                format!(
                    "control.token_files[1]: the token in {} must be at least 16 characters",
                    short.display()
                ),
            ],
        ),
        (
            "[control]\ntoken_files = [\"/nonexistent/token\"]\n".into(),
            vec!["control.token_files[0]: cannot read secret file /nonexistent/token".into()],
        ),
        (
            "[log]\nformat = \"xml\"\n".into(),
            vec!["log.format: unknown variant `xml`, expected `human` or `json` (line 2)".into()],
        ),
        (
            "[log]\nfilter = \"deskgate=loud\"\n".into(),
            vec!["log.filter: is not a valid tracing filter".into()],
        ),
        (
            "[server]\nshutdown_grace_secs = 0\nheader_read_timeout_secs = 0\n[log]\nfilter = \"[\"\n".into(),
            vec![
                "server.shutdown_grace_secs: must be > 0".into(),
                "server.header_read_timeout_secs: must be > 0".into(),
                "log.filter: is not a valid tracing filter".into(),
            ],
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let check = check_config(&file(&format!("case{i}.toml"), text), None);
        let output = check.output();
        assert!(!check.ok, "{text:?} passed");
        let lines: Vec<&str> = output.lines().map(str::trim).collect();
        assert!(lines[0].ends_with("is not a valid config:"), "{output}");
        for want in expected {
            assert!(
                lines.iter().any(|line| line.starts_with(want.as_str())),
                "{text:?}: expected {want:?} in:\n{output}"
            );
        }
        assert!(!output.contains("abc"), "a secret echoed: {output}");
    }
}

/// Recognisable in any output.
const CANARY: &str = "CANARY-5f3e9a71";

/// Writes a secret file whose content holds the canary.
fn secret(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

/// Every place a secret could leak from, for the test below.
struct Seen(String);

impl Seen {
    fn add(&mut self, what: &str, text: &str) {
        self.0 += &format!("\n== {what}\n{text}");
    }

    async fn answer(&mut self, what: &str, request: reqwest::RequestBuilder) {
        let response = request.send().await.unwrap();
        let head = format!("{} {:?}", response.status(), response.headers());
        let body = response.text().await.unwrap();
        self.add(what, &format!("{head}\n{body}"));
    }
}

#[tokio::test]
async fn no_secret_shows_in_check_config_the_log_answers_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let webhook_key = format!("{CANARY}-webhook-signing-key");
    let webhook_secret = base64::engine::general_purpose::STANDARD.encode(webhook_key.as_bytes());
    let dovecot = Dovecot::start();
    let wrong_password = dovecot.password_file(&format!("{CANARY}-imap"));
    let extra = format!(
        "[control]\ntoken_files = [\"{}\"]\n\
         [channels.wa]\nkind = \"whatsapp\"\nmeta = {{ app_secret_file = \"{}\", verify_token_file = \"{}\" }}\n\
         [channels.chat]\nkind = \"chat\"\nchat = {{ secret_file = \"{}\" }}\n{}\n\
         [outbound]\ngraph_api_base_url = \"http://127.0.0.1:{}\"\n\
         [outbound.whatsapp.wa]\nphone_number_id = \"1\"\naccess_token_file = \"{}\"\n\
         [sinks.crm]\nkind = \"webhook\"\n[sinks.crm.webhook]\nurl = \"http://127.0.0.1:{}/events\"\n\
         secret_files = [\"{}\"]\nretry_schedule_secs = [0, 0, 0, 1, 1, 1, 1]\n",
        secret(d, "control.token", &format!("{CANARY}-control-token")),
        secret(d, "app.secret", &format!("{CANARY}-app-secret")),
        secret(d, "verify.token", &format!("{CANARY}-verify-token")),
        secret(d, "chat.secret", &format!("{CANARY}-chat-secret")),
        dovecot.channel_toml("mail", "INBOX", &wrong_password, "auth_retry_secs = 1"),
        free_port(),
        secret(d, "graph.token", &format!("{CANARY}-graph-token")),
        free_port(),
        secret(d, "crm.secret", &format!("whsec_{webhook_secret}")),
    );
    let mut seen = Seen(String::new());
    let daemon = Daemon::start(d, &extra).await;
    let config = daemon.config_path().to_owned();
    let good = std::fs::read_to_string(&config).unwrap();

    let check = check_config(&config, None);
    let output = check.output();
    assert!(check.ok, "{output}");
    seen.add("check-config, valid", &output);
    // Broken in ways that make each secret's reader complain.
    let broken = [
        ("token", "control.token", CANARY.to_owned()),
        ("app secret", "app.secret", "CANARY1".to_owned()),
        ("webhook", "crm.secret", format!("whsec_{CANARY}!")),
    ];
    for (what, file, content) in &broken {
        let copy = d.join(format!("broken-{file}"));
        std::fs::write(&copy, content).unwrap();
        let text = good
            .replace(
                &d.join(file).display().to_string(),
                &copy.display().to_string(),
            )
            .replace("max_body_bytes = 4096", "max_body_bytes = 0");
        let path = d.join(format!("broken-{file}.toml"));
        std::fs::write(&path, text).unwrap();
        let check = check_config(&path, None);
        let output = check.output();
        assert!(!check.ok, "{what}: {output}");
        assert!(
            output.contains("channels.api.max_body_bytes: must be > 0"),
            "{output}"
        );
        seen.add(&format!("check-config, broken {what}"), &output);
        if *what == "token" {
            std::fs::write(&config, std::fs::read_to_string(&path).unwrap()).unwrap();
            let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        }
    }

    let client = reqwest::Client::new();
    // Something for the sink to fail to deliver.
    let message = test_kit::api_message("m1", "t1", "ana@example.com", "hi");
    seen.answer("api", client.post(daemon.url("/hooks/api")).json(&message))
        .await;
    let body = json!({"object": "whatsapp_business_account", "entry": []}).to_string();
    let wrong = format!("sha256={}", "0".repeat(64));
    seen.answer(
        "meta, bad signature",
        client
            .post(daemon.url("/hooks/wa"))
            .header("x-hub-signature-256", wrong)
            .body(body),
    )
    .await;
    seen.answer(
        "meta, wrong verify token",
        client
            .get(daemon.url("/hooks/wa?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")),
    )
    .await;
    seen.answer(
        "chat, unsigned",
        client.post(daemon.url("/hooks/chat")).body("{}"),
    )
    .await;
    for token in ["nope", CANARY] {
        seen.answer(
            "control, wrong token",
            client
                .get(daemon.url("/v1/control/sinks"))
                .bearer_auth(token),
        )
        .await;
    }
    let control_token = format!("{CANARY}-control-token");
    eventually(
        "the mailbox's login to be refused",
        Duration::from_secs(30),
        || async {
            let body: serde_json::Value = reqwest::get(daemon.url("/readyz"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["mailboxes"]["mail"]["state"] == "auth_failed"
                && body["sinks"]["crm"]["healthy"] == false
        },
    )
    .await;
    assert!(daemon.log().contains("configuration not reloaded"));
    for path in [
        "/readyz",
        "/healthz",
        "/metrics",
        "/v1/status",
        "/v1/events",
    ] {
        seen.answer(path, client.get(daemon.url(path))).await;
    }
    for path in [
        "/v1/control/sinks",
        "/v1/control/users",
        "/v1/control/quarantine",
    ] {
        seen.answer(
            path,
            client.get(daemon.url(path)).bearer_auth(&control_token),
        )
        .await;
    }
    seen.add("log", &daemon.log());
    assert!(
        seen.0.contains("auth_failed"),
        "the refused login is reported"
    );
    for leak in [CANARY, "CANARY1", webhook_secret.as_str()] {
        if let Some(at) = seen.0.find(leak) {
            let start = seen.0[..at].rfind("\n== ").unwrap_or(0);
            panic!(
                "{leak} leaked in:{}",
                &seen.0[start..(at + 200).min(seen.0.len())]
            );
        }
    }
}
