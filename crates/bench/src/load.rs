//! A closed-loop HTTP/1.1 load generator: each connection sends its next request as soon as
//! the previous answer arrives, and every latency goes into one histogram; and the ingest modes'
//! comparison of deskgate with its two baselines under that load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// What to send: a path and a body generator.
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub content_type: &'static str,
    /// Makes the body of request `n` on connection `c`, with unique ids.
    pub body: Arc<dyn Fn(usize, u64) -> Bytes + Send + Sync>,
    /// A header computed from each body (a signature), when the target needs one.
    pub signer: Option<Signer>,
}

/// Computes a header (name, value) from a request body.
pub type Signer = Arc<dyn Fn(&[u8]) -> (&'static str, String) + Send + Sync>;

impl Target {
    /// 1 KiB API channel messages with unique external ids; ten messages per thread.
    pub fn api(addr: SocketAddr, run: String) -> Target {
        Target {
            addr,
            path: "/hooks/api".to_owned(),
            content_type: "application/json",
            body: Arc::new(move |c, n| {
                let head = format!(
                    r#"{{"external_id":"{run}-c{c}-m{n}","thread_id":"{run}-c{c}-t{}","from":{{"email":"customer{}@example.com","name":"Customer {c}"}},"subject":"Order {n}","text":""#,
                    n / 10,
                    (c as u64 * 31 + n) % 500
                );
                let padding = 1024usize.saturating_sub(head.len() + 2);
                Bytes::from(format!("{head}{}\"}}", "x".repeat(padding)))
            }),
            signer: None,
        }
    }
}

pub struct Run {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies: Histogram<u64>,
}

impl Run {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p99_ms(&self) -> f64 {
        self.latencies.value_at_quantile(0.99) as f64 / 1000.0
    }
}

/// Several runs added up.
#[derive(Default)]
pub struct Totals {
    requests: u64,
    pub errors: u64,
    elapsed: Duration,
    latencies: Option<Histogram<u64>>,
}

impl Totals {
    pub fn add(&mut self, run: Run) {
        self.requests += run.requests;
        self.errors += run.errors;
        self.elapsed += run.elapsed;
        match &mut self.latencies {
            Some(h) => h.add(&run.latencies).expect("histograms share bounds"),
            None => self.latencies = Some(run.latencies),
        }
    }

    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn p99_ms(&self) -> f64 {
        self.latencies
            .as_ref()
            .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0)
            .unwrap_or(0.0)
    }
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to a minute, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

/// Drives `connections` connections for a one-second warm-up and then `secs`, counting only
/// requests that complete after the warm-up.
pub async fn run(target: &Target, connections: usize, secs: Duration) -> anyhow::Result<Run> {
    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let measure_from = started + warmup;
    let stop_at = measure_from + secs;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let stream = tokio::net::TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let path = target.path.clone();
        let content_type = target.content_type;
        let body = Arc::clone(&target.body);
        let signer = target.signer.clone();
        let authority = target.addr.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = histogram();
            let (mut requests, mut errors) = (0u64, 0u64);
            let mut n = 0u64;
            loop {
                let now = Instant::now();
                if now >= stop_at {
                    break;
                }
                let content = body(c, n);
                let mut request = hyper::Request::post(&path)
                    .header("host", &authority)
                    .header("content-type", content_type);
                if let Some(signer) = &signer {
                    let (name, value) = signer(&content);
                    request = request.header(name, value);
                }
                let request = request
                    .body(Full::new(content))
                    .expect("a well-formed request");
                n += 1;
                sender.ready().await.context("connection closed")?;
                let response = sender.send_request(request).await?;
                let ok = response.status().is_success();
                response.into_body().collect().await?;
                let done = Instant::now();
                if now >= measure_from {
                    requests += 1;
                    errors += u64::from(!ok);
                    latencies
                        .record(done.duration_since(now).as_micros() as u64)
                        .ok();
                }
            }
            anyhow::Ok((requests, errors, latencies))
        }));
    }
    let mut total = Run {
        requests: 0,
        errors: 0,
        elapsed: secs,
        latencies: histogram(),
    };
    for task in tasks {
        let (requests, errors, latencies) = task.await??;
        total.requests += requests;
        total.errors += errors;
        total
            .latencies
            .add(&latencies)
            .expect("histograms share bounds");
    }
    total.elapsed = Instant::now()
        .saturating_duration_since(measure_from)
        .max(Duration::from_millis(1));
    Ok(total)
}

/// An ingest mode's measure: in each round, the no-op server, the bare durable journal server
/// ([`crate::durable`]) and deskgate take the same load in turn; prints `ratio` (deskgate to
/// no-op) and `ratio_durable` (deskgate to the durable server) on the line `bench {name}: ...`.
pub async fn compare(
    name: &str,
    (connections, secs, rounds): (usize, Duration, usize),
    target: impl Fn(SocketAddr, String) -> Target,
) -> anyhow::Result<()> {
    let mut noop = Totals::default();
    let mut durable = Totals::default();
    let mut deskgate = Totals::default();
    // The most input, in seconds, the processor had still to apply when a round's load ended.
    let mut lag_secs: f64 = 0.0;
    let state = tempfile::tempdir()?;
    for round in 0..rounds {
        for (server, totals) in [
            ("baseline", &mut noop),
            ("durable", &mut durable),
            ("deskgate", &mut deskgate),
        ] {
            let child = match server {
                "baseline" => crate::servers::Child::noop().await?,
                "durable" => {
                    crate::servers::Child::durable(&crate::durable::dir(state.path(), round))
                        .await?
                }
                _ => {
                    let dir = state.path().join(format!("state-{round}"));
                    crate::servers::Child::deskgate(&dir).await?
                }
            };
            let run = run(&target(child.addr, format!("r{round}")), connections, secs).await?;
            if server == "deskgate" {
                lag_secs = lag_secs.max(processor_lag_secs(child.addr, run.per_sec()).await?);
            }
            eprintln!(
                "  round {round} {server}: {:.0} req/s, p99 {:.2} ms, {} errors",
                run.per_sec(),
                run.p99_ms(),
                run.errors
            );
            totals.add(run);
        }
    }
    for (server, totals) in [("deskgate", &deskgate), ("durable", &durable)] {
        anyhow::ensure!(
            totals.errors == 0,
            "{server} answered {} requests with an error",
            totals.errors
        );
    }
    println!(
        "bench {name}: deskgate={:.0} baseline={:.0} durable={:.0} ratio={:.2} ratio_durable={:.2} p99_ms={:.2} durable_p99_ms={:.2} lag_s={:.2}",
        deskgate.per_sec(),
        noop.per_sec(),
        durable.per_sec(),
        deskgate.per_sec() / noop.per_sec(),
        deskgate.per_sec() / durable.per_sec(),
        deskgate.p99_ms(),
        durable.p99_ms(),
        lag_secs
    );
    Ok(())
}

/// How far behind the journal deskgate's processor is, in seconds of input at `per_sec`: the
/// journaled records it has not applied yet, read from `/v1/status` as the load ends.
async fn processor_lag_secs(addr: SocketAddr, per_sec: f64) -> anyhow::Result<f64> {
    let status = crate::servers::get_json(addr, "/v1/status").await?;
    let durable = status["journal"]["durable_seq"].as_u64().unwrap_or(0);
    let cursor = status["processor"]["cursor"].as_u64().unwrap_or(0);
    Ok(durable.saturating_sub(cursor) as f64 / per_sec.max(1.0))
}
