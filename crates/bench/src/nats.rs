//! Bench mode `nats`: the JetStream sink's delivery rate against a bare async-nats publish
//! loop of the same payloads, and the latency from an inbound message's 2xx to its event in
//! the stream.
//!
//! 1. deskgate (without sinks) takes API messages until its outbox holds `events` events.
//! 2. deskgate restarts with a new `nats` sink on a fresh `nats-server -js`; the time until its
//!    cursor passes event `events` is the deskgate rate.
//! 3. The same payloads, read back from the outbox, are published to another stream of the
//!    same server by a bare loop with the same number of acks in flight, each publish with its
//!    `Nats-Msg-Id`. Steps 2 and 3 alternate for `rounds` rounds, each on a fresh server that
//!    keeps its streams in memory, and each side's rate is over all its rounds: the bare loop
//!    alone has swung between 40k and 98k publishes/s from one run to the next.
//! 4. With the sink caught up, signed WhatsApp webhooks (one text message each) at a moderate
//!    rate; a NATS subscriber on the stream's subjects sees each event as JetStream stores it,
//!    and the latency runs from the webhook's 200 to that moment.
//!
//! deskgate runs on a tokio runtime of its own (in a thread of this process); the load and the
//! NATS clients run on the bench's runtime.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use futures::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::load;
use test_kit::nats::NatsServer;

const IN_FLIGHT: usize = 256;

type Http = Client<HttpConnector, Full<Bytes>>;

/// deskgate on its own runtime thread.
struct Gateway {
    addr: SocketAddr,
    shutdown: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

impl Gateway {
    async fn start(toml: String) -> anyhow::Result<Gateway> {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime starts");
            runtime.block_on(async move {
                let started = async {
                    let config = deskgate::config::Config::parse(&toml)
                        .map_err(|p| anyhow::anyhow!("{p}"))?;
                    deskgate::app::App::start(config).await
                };
                match started.await {
                    Ok(app) => {
                        let _ = started_tx.send(Ok((app.local_addr, app.shutdown_token())));
                        app.wait().await;
                    }
                    Err(error) => {
                        let _ = started_tx.send(Err(error));
                    }
                }
            });
        });
        let (addr, shutdown) = started_rx.await.context("deskgate thread")??;
        Ok(Gateway {
            addr,
            shutdown,
            thread,
        })
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

fn gateway_toml(state: &Path, sink: &str) -> anyhow::Result<String> {
    let meta = test_kit::mixed::write_secrets(&state.with_extension("secrets"))?;
    Ok(format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = \"{}\"\n[events]\nrequire_token = false\n\
         [log]\nfilter = \"warn\"\n[channels.api]\nkind = \"api\"\n[channels.wa]\nkind = \"whatsapp\"\n{meta}\n{sink}",
        state.display()
    ))
}

/// A signed WhatsApp Cloud API webhook with one text message, `wamid.<id>`.
fn whatsapp_webhook(id: &str, customer: u64) -> (Bytes, String) {
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Customer {customer}"}},"wa_id":"{customer}"}}],"messages":[{{"from":"{customer}","id":"wamid.{id}","timestamp":"1700000000","text":{{"body":"Where is my order?"}},"type":"text"}}]}},"field":"messages"}}]}}]}}"#
    );
    let signature = test_kit::mixed::sign(body.as_bytes());
    (Bytes::from(body), signature)
}

fn sink_toml(name: &str, url: &str, stream: &str, prefix: &str) -> String {
    format!(
        "[sinks.{name}]\nkind = \"nats\"\nbatch = 1024\n[sinks.{name}.nats]\nservers = [\"{url}\"]\n\
         stream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\nmax_in_flight = {IN_FLIGHT}\n"
    )
}

async fn get_json(http: &Http, addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    let uri: hyper::Uri = format!("http://{addr}{path}").parse()?;
    let response = http
        .request(hyper::Request::get(uri).body(Full::default())?)
        .await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

pub async fn run(events: u64, rounds: usize, e2e_rate: u64, e2e_secs: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    // 1. Fill the outbox.
    let gateway = Gateway::start(gateway_toml(&state, "")?).await?;
    let mut round = 0;
    loop {
        let status = get_json(&http, gateway.addr, "/v1/status").await?;
        let last = status["outbox"]["last_seq"].as_u64().unwrap_or(0);
        if last >= events {
            eprintln!("  outbox holds {last} events");
            break;
        }
        let target = load::Target::api(gateway.addr, format!("fill{round}"));
        load::run(&target, 32, Duration::from_secs(2)).await?;
        round += 1;
    }
    gateway.stop().await;

    // 2 and 3, alternating: deskgate's sink delivers them to a fresh nats-server, then the
    // bare loop publishes the same payloads to the same server. Each round's sink has a name
    // of its own, so that it starts from the outbox's first event.
    let rounds = rounds.max(1);
    let (mut deskgate_secs, mut baseline_secs) = (0.0, 0.0);
    let mut payloads = Vec::new();
    let mut last = None;
    for round in 0..rounds {
        if let Some((gateway, _nats, _nats_dir)) = last.take() {
            Gateway::stop(gateway).await;
        }
        let nats_dir = memory_dir()?;
        let nats = tokio::task::block_in_place(|| NatsServer::start(nats_dir.path()));
        let sink = format!("bench{round}");
        settle_disk();
        let started = Instant::now();
        let gateway = Gateway::start(gateway_toml(
            &state,
            &sink_toml(&sink, &nats.url(), "DESKGATE", "dg"),
        )?)
        .await?;
        loop {
            let status = get_json(&http, gateway.addr, "/v1/status").await?;
            if status["sinks"][&sink]["cursor"].as_u64().unwrap_or(0) >= events {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        deskgate_secs += secs;
        // The rest of the backlog goes too before the baseline (and the latency) runs.
        loop {
            let status = get_json(&http, gateway.addr, "/v1/status").await?;
            if status["sinks"][&sink]["lag_events"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if payloads.is_empty() {
            payloads = read_outbox(&http, gateway.addr, events).await?;
        }
        settle_disk();
        let baseline_rate = baseline(&nats.url(), &payloads).await?;
        baseline_secs += events as f64 / baseline_rate;
        eprintln!(
            "  round {round}: deskgate sink {:.0} events/s, bare async-nats loop {baseline_rate:.0} events/s",
            events as f64 / secs
        );
        last = Some((gateway, nats, nats_dir));
    }
    let (gateway, nats, _nats_dir) = last.expect("at least one round ran");
    let deskgate_rate = (events as f64 * rounds as f64) / deskgate_secs;
    let baseline_rate = (events as f64 * rounds as f64) / baseline_secs;
    println!(
        "bench sink-nats: deskgate={deskgate_rate:.0} baseline={baseline_rate:.0} ratio={:.2}",
        deskgate_rate / baseline_rate
    );

    // 4. End-to-end latency at a moderate rate.
    let (p50, p99) = e2e(&http, gateway.addr, &nats.url(), e2e_rate, e2e_secs).await?;
    println!("bench e2e-nats: p50_ms={p50:.2} p99_ms={p99:.2}");
    gateway.stop().await;
    Ok(())
}

/// Where a round's nats-server keeps its streams: in memory (`/dev/shm`) where there is one.
/// On disk, the bare loop's rate followed the virtual disk's write throttling (78k publishes/s
/// in a run's first round, 33k to 39k in its later ones), and a baseline held back by the disk
/// flatters the ratio.
fn memory_dir() -> anyhow::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    Ok(if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    })
}

/// Writes back every dirty page before a timed phase, so that the writeback of what came
/// before (the outbox fill alone leaves hundreds of MB of deskgate's writes in the page cache)
/// does not slow whichever side runs next.
fn settle_disk() {
    tokio::task::block_in_place(|| {
        let _ = std::process::Command::new("sync").status();
    });
}

/// The first `events` events: (id, type, CloudEvent JSON).
async fn read_outbox(
    http: &Http,
    addr: SocketAddr,
    events: u64,
) -> anyhow::Result<Vec<(String, String, Bytes)>> {
    let mut payloads = Vec::new();
    let mut after = 0;
    while (payloads.len() as u64) < events {
        let page = get_json(http, addr, &format!("/v1/events?after={after}&limit=1000")).await?;
        let batch = page["events"].as_array().context("events page")?;
        anyhow::ensure!(!batch.is_empty(), "the outbox ended early");
        for event in batch.iter().take((events as usize) - payloads.len()) {
            payloads.push((
                event["id"].as_str().unwrap_or_default().to_owned(),
                event["type"].as_str().unwrap_or_default().to_owned(),
                Bytes::from(serde_json::to_vec(event)?),
            ));
        }
        after = page["next"].as_u64().context("next")?;
    }
    Ok(payloads)
}

async fn baseline(url: &str, payloads: &[(String, String, Bytes)]) -> anyhow::Result<f64> {
    let js = jetstream::new(async_nats::connect(url).await?);
    js.get_or_create_stream(stream::Config {
        name: "BASELINE".to_owned(),
        subjects: vec!["base.>".to_owned()],
        duplicate_window: Duration::from_secs(24 * 3600),
        ..Default::default()
    })
    .await?;
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    for (id, event_type, body) in payloads {
        if in_flight.len() >= IN_FLIGHT {
            let ack: jetstream::context::PublishAckFuture =
                in_flight.pop_front().expect("non-empty");
            ack.await?;
        }
        let message = PublishMessage::build().payload(body.clone()).message_id(id);
        in_flight.push_back(
            js.send_publish(format!("base.{event_type}"), message)
                .await?,
        );
    }
    for ack in in_flight {
        ack.await?;
    }
    Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
}

/// Posts `rate` messages a second for `secs`; returns the p50 and p99 milliseconds from each
/// 2xx to the event's arrival in the stream.
async fn e2e(
    http: &Http,
    addr: SocketAddr,
    nats_url: &str,
    rate: u64,
    secs: u64,
) -> anyhow::Result<(f64, f64)> {
    let client = async_nats::connect(nats_url).await?;
    let mut subscription = client.subscribe("dg.*.ticket.>").await?;
    client.flush().await?;
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = Arc::clone(&arrived);
    let listener = tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let now = Instant::now();
            if let Ok(event) = serde_json::from_slice::<Value>(&message.payload) {
                let id = event["data"]["message"]["external_id"].as_str();
                if let Some(id) = id.filter(|id| id.starts_with("wamid.e2e-")) {
                    seen.lock()
                        .expect("no panics")
                        .entry(id.to_owned())
                        .or_insert(now);
                }
            }
        }
    });
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut posts = Vec::new();
    for n in 0..rate * secs {
        ticker.tick().await;
        let (http, acked) = (http.clone(), Arc::clone(&acked));
        posts.push(tokio::spawn(async move {
            let (body, signature) =
                whatsapp_webhook(&format!("e2e-{n}"), 5_511_800_000_000 + n % 50);
            let id = format!("wamid.e2e-{n}");
            let request = hyper::Request::post(format!("http://{addr}/hooks/wa"))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .body(Full::new(body))?;
            let response = http.request(request).await?;
            let ok = response.status().is_success();
            let done = Instant::now();
            response.into_body().collect().await?;
            anyhow::ensure!(ok, "deskgate refused a message");
            acked.lock().expect("no panics").insert(id, done);
            anyhow::Ok(())
        }));
    }
    for post in posts {
        post.await??;
    }
    let expected = (rate * secs) as usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived.lock().expect("no panics").len() < expected {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every event reached the stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listener.abort();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let arrived = arrived.lock().expect("no panics");
    for (id, done) in acked.lock().expect("no panics").iter() {
        let at = arrived[id];
        histogram.record(at.saturating_duration_since(*done).as_micros().max(1) as u64)?;
    }
    Ok((
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
    ))
}
