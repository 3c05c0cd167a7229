//! Messages that name the problem: a bad query parameter is named, a config with several bad
//! values lists every one, a rejected reload logs its problem once as check-config prints it,
//! and a quarantined mail is answered as `kind: "mail"`.

use std::time::Duration;

use serde_json::Value;

use super::{control, Control};
use test_kit::{check_config, eventually, CheckConfig, Daemon};

const BAD: &str = "[channels.a]\nkind = \"nope\"\n\n[channels.b]\nkind = \"api\"\n\
                   [channels.b.tickets.routing]\nrule = \"sometimes\"\n";

#[tokio::test]
async fn refusals_name_the_parameter_every_problem_and_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}[channels.support]\nkind = \"email\"\n[channels.support.email]\nmax_message_bytes = 200\n",
        control(dir.path())
    );
    let daemon = Daemon::start(dir.path(), &extra).await;
    let client = reqwest::Client::new();

    let response = client
        .get(daemon.url("/v1/events?after=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"],
        "after: must be a whole number from 0 to 18446744073709551615, got \"abc\""
    );

    // A mail over the channel's limit is acknowledged, quarantined, and said to be a mail.
    let mail = format!(
        "From: ana@example.com\r\nTo: support@acme.test\r\nSubject: big\r\n\
         Message-ID: <big-1@example.com>\r\n\r\n{}\r\n",
        "x".repeat(400)
    );
    let response = client
        .post(daemon.url("/hooks/support"))
        .header("content-type", "message/rfc822")
        .body(mail)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"][0]["kind"], "mail", "{body}");
    assert_eq!(body["items"][0]["quarantined"], true, "{body}");

    // Two bad enum values: check-config lists both.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, BAD).unwrap();
    let CheckConfig { ok, stderr, .. } = check_config(&bad, None);
    assert!(!ok);
    assert!(
        stderr.contains("channels.a.kind: unknown variant `nope`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("channels.b.tickets.routing.rule: unknown variant `sometimes`"),
        "{stderr}"
    );

    // A rejected reload logs its problem once, in check-config's words.
    let text = std::fs::read_to_string(daemon.config_path()).unwrap();
    std::fs::write(
        daemon.config_path(),
        format!(
            "{text}\n{}",
            BAD.replace("[channels.b]", "[channels.c]")
                .replace("channels.b.", "channels.c.")
        ),
    )
    .unwrap();
    let printed = check_config(daemon.config_path(), None).stderr;
    let problem = printed
        .lines()
        .find(|l| l.contains("channels.c.tickets.routing.rule"))
        .unwrap_or_else(|| panic!("{printed}"))
        .trim()
        .to_owned();
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    eventually("the refused reload", Duration::from_secs(10), || async {
        daemon.log().contains("configuration not reloaded")
    })
    .await;
    let log = daemon.log();
    assert_eq!(log.matches(problem.as_str()).count(), 1, "{problem}\n{log}");
    assert_eq!(log.matches("channels.a.kind").count(), 1, "{log}");
    let control = Control::new(&daemon);
    let (status, _) = control.send("GET", "/v1/control/users", None).await;
    assert_eq!(status, 200, "the running config stays");
}
