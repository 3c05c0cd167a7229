//! What monitoring sees: `/readyz` through a sink lagging past its limit and catching up, and a
//! mailbox whose server goes away and comes back; every metric docs/metrics.md lists, read as
//! parsed Prometheus text.

use std::time::Duration;

use serde_json::{json, Value};

use super::{metric_values, post_raw};
use test_kit::dovecot::Dovecot;
use test_kit::smtpd::Smtpd;
use test_kit::{api_message, eventually, free_port, Daemon};

const SECRET: &str = "whsec_cmVhZGluZXNzIHRlc3Qgc2VjcmV0IGZvciBzaW5rcw==";

/// `/readyz`: (status code, body).
async fn readyz(daemon: &Daemon) -> (u16, Value) {
    let response = reqwest::get(daemon.url("/readyz")).await.unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap())
}

async fn metrics(daemon: &Daemon) -> String {
    reqwest::get(daemon.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `/readyz` answers `code` with `status` and `check` holds for its body.
async fn ready_as(daemon: &Daemon, code: u16, status: &str, check: impl Fn(&Value) -> bool) {
    let what = format!("readiness {code} {status}");
    eventually(&what, Duration::from_secs(30), || async {
        let (got, body) = readyz(daemon).await;
        got == code && body["status"] == status && check(&body)
    })
    .await;
}

/// A receiver that accepts every event, on `port`.
async fn accept_everything(port: u16) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().route("/events", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

#[tokio::test]
async fn a_sink_over_its_lag_limit_makes_readiness_fail_until_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("sink.secret");
    std::fs::write(&secret, SECRET).unwrap();
    // Nothing listens on the receiver's port yet.
    let port = free_port();
    let sink = |name: &str, limit: &str| {
        format!(
            "[sinks.{name}]\nkind = \"webhook\"\n{limit}\n[sinks.{name}.webhook]\n\
             url = \"http://127.0.0.1:{port}/events\"\nsecret_files = [\"{}\"]\n\
             timeout_ms = 500\nretry_schedule_secs = [{}]\n",
            secret.display(),
            // Retries once a second for two minutes: the receiver comes up well before.
            vec!["1"; 120].join(", ")
        )
    };
    let extra = sink("strict", "max_lag_events = 3") + &sink("loose", "");
    let daemon = Daemon::start(dir.path(), &extra).await;
    ready_as(&daemon, 200, "ready", |_| true).await;

    let client = reqwest::Client::new();
    for i in 0..3 {
        let message = api_message(&format!("m{i}"), &format!("t{i}"), "ana@example.com", "hi");
        let posted = client
            .post(daemon.url("/hooks/api"))
            .json(&message)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
    }
    ready_as(&daemon, 503, "unready", |body| {
        let (strict, loose) = (&body["sinks"]["strict"], &body["sinks"]["loose"]);
        strict["lagging"] == true
            && strict["lag_events"].as_u64() > Some(3)
            && loose["healthy"] == false
            && loose["lagging"] == false
    })
    .await;
    let (_, body) = readyz(&daemon).await;
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("sink strict:") && problems.contains("over its limit"),
        "{body}"
    );
    assert!(problems.contains("sink loose: failing"), "{body}");
    let text = metrics(&daemon).await;
    let lag = metric_values(&text, "deskgate_sink_lag_events");
    assert!(lag["sink=strict"] > 3.0, "{lag:?}");
    assert_eq!(
        metric_values(&text, "deskgate_sink_healthy")["sink=strict"],
        0.0
    );
    assert!(metric_values(&text, "deskgate_sink_retried_total")["sink=strict"] >= 1.0);

    // The receiver comes up: both sinks deliver everything and readiness returns.
    let receiver = accept_everything(port).await;
    ready_as(&daemon, 200, "ready", |body| {
        body["sinks"]["strict"]["lag_events"] == 0 && body["sinks"]["loose"]["lag_events"] == 0
    })
    .await;
    assert_eq!(body_problems(&daemon).await, json!([]));
    let text = metrics(&daemon).await;
    assert_eq!(
        metric_values(&text, "deskgate_sink_lag_events")["sink=strict"],
        0.0
    );
    let requests = metric_values(&text, "deskgate_sink_request_duration_seconds");
    assert!(requests["sink=strict"] >= 1.0, "{requests:?}");
    receiver.abort();
}

async fn body_problems(daemon: &Daemon) -> Value {
    readyz(daemon).await.1["problems"].clone()
}

#[tokio::test]
async fn a_mailbox_whose_server_goes_away_shows_on_readiness_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut dovecot = Dovecot::start();
    let password = dovecot.password_file(test_kit::dovecot::PASSWORD);
    let extra = dovecot.channel_toml("mail", "INBOX", &password, "");
    let daemon = Daemon::start(dir.path(), &extra).await;
    ready_as(&daemon, 200, "ready", |body| {
        body["mailboxes"]["mail"]["state"] == "idle"
            && !body["mailboxes"]["mail"]["last_sync"].is_null()
    })
    .await;
    let text = metrics(&daemon).await;
    let synced = metric_values(&text, "deskgate_imap_last_sync_timestamp_seconds");
    assert!(synced["channel=mail"] > 1.7e9, "{synced:?}");
    assert_eq!(
        metric_values(&text, "deskgate_imap_connected")["channel=mail"],
        1.0
    );

    dovecot.stop();
    ready_as(&daemon, 200, "degraded", |body| {
        body["mailboxes"]["mail"]["state"] == "backoff"
            && body["problems"].to_string().contains("mailbox mail:")
    })
    .await;
    let text = metrics(&daemon).await;
    assert_eq!(
        metric_values(&text, "deskgate_imap_connected")["channel=mail"],
        0.0
    );
    let errors = metric_values(&text, "deskgate_imap_connection_errors_total");
    assert!(
        errors.keys().any(|k| k.starts_with("channel=mail,")),
        "{errors:?}"
    );
    // The hooks still work while the mailbox is down.
    let posted = reqwest::Client::new()
        .post(daemon.url("/hooks/api"))
        .json(&api_message("m1", "t1", "ana@example.com", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);

    dovecot.run();
    ready_as(&daemon, 200, "ready", |body| {
        body["mailboxes"]["mail"]["state"] == "idle"
    })
    .await;
}

#[tokio::test]
async fn every_listed_metric_is_exposed_as_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start_refusing(&dir.path().join("maildir"), free_port());
    let extra = format!(
        "[channels.chat]\nkind = \"chat\"\nchat = {{ rate_limit = {{ per_minute = 1, burst = 1 }} }}\n\
         [channels.mail]\nkind = \"email\"\n\
         [outbound]\npermanent_attempts = 1\n[outbound.mailboxes.support]\n\
         address = \"support@acme.test\"\ncompany_name = \"Acme\"\nchannels = [\"mail\"]\n\
         acknowledge_new_tickets = true\n[outbound.mailboxes.support.smtp]\nhost = \"127.0.0.1\"\n\
         port = {}\ntls = \"plain\"\n",
        smtpd.port
    );
    let daemon = Daemon::start(dir.path(), &extra).await;
    let json = "application/json";
    let message = api_message("m1", "t1", "ana@example.com", "hi").to_string();
    assert_eq!(
        post_raw(&daemon, "/hooks/api", json, message.clone()).await,
        202
    );
    assert_eq!(post_raw(&daemon, "/hooks/api", json, message).await, 200);
    assert_eq!(
        post_raw(&daemon, "/hooks/api", json, "{".to_owned()).await,
        400
    );
    assert_eq!(
        post_raw(&daemon, "/hooks/nope", json, "{}".to_owned()).await,
        404
    );
    let chat =
        |id: &str| json!({"visitor_token": "v1", "message_id": id, "text": "hi"}).to_string();
    assert_eq!(
        post_raw(&daemon, "/hooks/chat", json, chat("c1")).await,
        202
    );
    assert_eq!(
        post_raw(&daemon, "/hooks/chat", json, chat("c2")).await,
        429
    );
    let mail = |from: &str, id: &str| {
        format!("From: {from}\r\nSubject: Help\r\nMessage-ID: <{id}@example.com>\r\n\r\nHelp.\r\n")
    };
    let rfc822 = "message/rfc822";
    assert_eq!(
        post_raw(&daemon, "/hooks/mail", rfc822, mail("ok@example.com", "a")).await,
        202
    );
    assert_eq!(
        post_raw(
            &daemon,
            "/hooks/mail",
            rfc822,
            mail("refuse@example.com", "b")
        )
        .await,
        202
    );
    // No headers at all: kept and quarantined.
    assert_eq!(
        post_raw(&daemon, "/hooks/mail", rfc822, "just text".to_owned()).await,
        202
    );
    smtpd.wait_for(1, Duration::from_secs(30)).await;
    daemon.settled().await;

    let text = eventually_metrics(&daemon, |text| {
        let outbound = metric_values(text, "deskgate_outbound_total");
        // The sender journals while it retries: a scrape can fall between a record's
        // journaling and its application, so wait for one with no lag.
        outbound.get("outcome=sent,via=email") >= Some(&1.0)
            && outbound.get("outcome=failed,via=email") >= Some(&1.0)
            && metric_values(text, "deskgate_processor_lag").get("") == Some(&0.0)
    })
    .await;
    let inbound = metric_values(&text, "deskgate_inbound_total");
    for labels in [
        "channel=api,outcome=accepted",
        "channel=api,outcome=duplicate",
        "channel=api,outcome=rejected",
        "channel=chat,outcome=rejected",
        "channel=mail,outcome=accepted",
        // Unknown channel ids are folded into one label.
        "channel=unknown,outcome=rejected",
    ] {
        assert!(inbound.get(labels) >= Some(&1.0), "{labels} in {inbound:?}");
    }
    for gauge in [
        "deskgate_journal_queued",
        "deskgate_journal_durable_seq",
        "deskgate_processor_cursor",
        "deskgate_processor_lag",
        "deskgate_outbox_last_seq",
    ] {
        assert!(metric_values(&text, gauge).contains_key(""), "{gauge}");
    }
    assert_eq!(metric_values(&text, "deskgate_processor_lag")[""], 0.0);
    let hooks = metric_values(&text, "deskgate_hook_duration_seconds");
    assert!(
        hooks.get("channel=api") >= Some(&1.0) && hooks.get("channel=mail") >= Some(&1.0),
        "{hooks:?}"
    );
    assert_eq!(
        metric_values(&text, "deskgate_rate_limited_total")["channel=chat"],
        1.0
    );
    assert_eq!(
        metric_values(&text, "deskgate_quarantined_total")["channel=mail"],
        1.0
    );
    assert!(
        text.contains("# HELP deskgate_quarantined_total"),
        "described"
    );
}

/// Scrapes until `ready` holds for the page (outcomes arrive after the sender's attempts).
async fn eventually_metrics(daemon: &Daemon, ready: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = metrics(daemon).await;
        if ready(&page) {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never got there:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
