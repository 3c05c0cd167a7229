//! The NATS JetStream sink against a real `nats-server -js`: every outbox event reaches the
//! stream exactly once (as a JetStream consumer sees it), in order per ticket, across a NATS
//! outage in the middle of a run and a kill -9 of deskgate; each under a subject that names
//! its ticket or contact and with the CloudEvents content type.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::sinks_support::{caught_up, sink_status};
use async_nats::jetstream;
use serde_json::Value;
use test_kit::nats::NatsServer;
use test_kit::{api_message, eventually, Daemon};

const STREAM: &str = "DGTEST";
const PREFIX: &str = "dgtest.events";

fn sink_toml(nats: &NatsServer) -> String {
    format!(
        "[sinks.js]\nkind = \"nats\"\n[sinks.js.nats]\nservers = [\"{}\"]\nstream = \"{STREAM}\"\n\
         subject_prefix = \"{PREFIX}\"\nack_timeout_ms = 1000\nbackoff_min_ms = 50\nbackoff_max_ms = 500\n\
         duplicate_window_secs = 3600\nmax_in_flight = 64\n",
        nats.url()
    )
}

/// Posts `count` messages spread over eight threads (tickets) and six senders.
async fn post_round(daemon: &Daemon, round: usize, count: usize) {
    let client = reqwest::Client::new();
    for i in 0..count {
        let message = api_message(
            &format!("r{round}-m{i}"),
            &format!("thread-{}", i % 8),
            &format!("customer{}@example.test", i % 6),
            &format!("round {round} message {i}"),
        );
        let response = client
            .post(daemon.url("/hooks/api"))
            .json(&message)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_gets_every_event_once_in_ticket_order_across_outages() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(dir.path());
    let mut daemon = Daemon::start(dir.path(), &sink_toml(&nats)).await;

    post_round(&daemon, 0, 40).await;
    caught_up(&daemon, "js", Duration::from_secs(60)).await;

    // NATS goes away: ingestion goes on, events wait in the outbox, readiness says so.
    nats.stop();
    post_round(&daemon, 1, 40).await;
    let client = reqwest::Client::new();
    let readyz = daemon.url("/readyz");
    eventually(
        "readiness to report the failing sink",
        Duration::from_secs(30),
        || {
            let request = client.get(&readyz).send();
            async move {
                let body: Value = request.await.unwrap().json().await.unwrap();
                body["status"] == "degraded" && body["sinks"]["js"]["healthy"] == false
            }
        },
    )
    .await;
    daemon.settled().await;
    let stuck = sink_status(&daemon, "js").await;
    assert!(stuck["lag_events"].as_u64().unwrap() > 0, "{stuck}");

    // NATS comes back (same storage): delivery resumes where it stopped.
    nats.restart();
    post_round(&daemon, 2, 40).await;
    caught_up(&daemon, "js", Duration::from_secs(60)).await;

    // deskgate is killed in the middle of delivering; it publishes again after the restart.
    post_round(&daemon, 3, 60).await;
    daemon.kill();
    daemon.restart().await;
    post_round(&daemon, 4, 20).await;
    caught_up(&daemon, "js", Duration::from_secs(60)).await;
    let status = sink_status(&daemon, "js").await;
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["lag_events"], 0, "{status}");

    let outbox = daemon.all_events().await;
    let messages = nats.read_messages(STREAM).await;
    let stream: Vec<(String, String, Value)> = messages
        .iter()
        .map(|m| (m.id.clone(), m.subject.clone(), m.event.clone()))
        .collect();
    assert!(outbox.len() >= 200, "{} events", outbox.len());
    // CloudEvents NATS binding, structured mode: the content type travels as a header.
    for message in &messages {
        assert_eq!(
            message.content_type.as_deref(),
            Some("application/cloudevents+json"),
            "{}",
            message.subject
        );
    }

    // Exactly the outbox's events, none twice.
    let ids: Vec<&str> = stream.iter().map(|(id, _, _)| id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a duplicate reached the stream");
    let expected: HashSet<&str> = outbox.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(unique, expected);
    // The subject names the ticket or contact, then the type: `<prefix>.<id>.<kind>.<what>`.
    for (id, subject, event) in &stream {
        assert_eq!(event["id"].as_str(), Some(id.as_str()));
        let kind = event["type"].as_str().unwrap();
        assert_eq!(
            subject,
            &format!(
                "{PREFIX}.{}.{}",
                event["subject"].as_str().unwrap(),
                kind.strip_prefix("deskgate.").unwrap()
            )
        );
    }
    // In order per ticket (and contact): sequence numbers only grow within a subject.
    let mut last: HashMap<&str, &str> = HashMap::new();
    for (_, _, event) in &stream {
        let subject = event["subject"].as_str().unwrap();
        let sequence = event["sequence"].as_str().unwrap();
        if let Some(previous) = last.insert(subject, sequence) {
            assert!(
                previous < sequence,
                "{subject}: {sequence} after {previous}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_later_delivers_the_kept_history_and_the_stream_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let mut daemon = Daemon::start(dir.path(), "").await;
    post_round(&daemon, 0, 10).await;
    daemon.settled().await;
    daemon.terminate();
    // Same state, now with the sink configured.
    let config = std::fs::read_to_string(daemon.config_path()).unwrap();
    std::fs::write(daemon.config_path(), config + &sink_toml(&nats)).unwrap();
    daemon.restart().await;
    caught_up(&daemon, "js", Duration::from_secs(60)).await;
    let outbox = daemon.all_events().await;
    assert_eq!(nats.read_stream(STREAM).await.len(), outbox.len());

    // A restart finds the stream already there and goes on from its cursor.
    daemon.terminate();
    daemon.restart().await;
    post_round(&daemon, 1, 5).await;
    caught_up(&daemon, "js", Duration::from_secs(60)).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut stream = jetstream::new(client).get_stream(STREAM).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.state.messages as usize,
        daemon.all_events().await.len()
    );
    assert_eq!(info.config.duplicate_window, Duration::from_secs(3600));
    assert_eq!(info.config.subjects, vec![format!("{PREFIX}.>")]);

    // A consumer filtering on one ticket's token gets that ticket's events, in order, and
    // nothing else.
    let outbox = daemon.all_events().await;
    let ticket = outbox
        .iter()
        .find(|e| e["type"] == "deskgate.ticket.created")
        .and_then(|e| e["subject"].as_str())
        .unwrap()
        .to_owned();
    let expected: Vec<&str> = outbox
        .iter()
        .filter(|e| e["subject"] == ticket.as_str())
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(expected.len() >= 2, "{expected:?}");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("one-ticket".to_owned()),
            filter_subject: format!("{PREFIX}.{ticket}.>"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(message) = futures::StreamExt::next(&mut batch).await {
        let event: Value = serde_json::from_slice(&message.unwrap().payload).unwrap();
        got.push(event["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, expected);
}
