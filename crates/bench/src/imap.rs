//! Bench mode `imap`: deskgate's full IMAP ingest against a bare async-imap fetch of the same
//! mailbox, and the IDLE latency from an APPEND to the event being readable.
//!
//! ```text
//! bench imap-5000: deskgate=<msg/s> baseline=<msg/s> ratio=<r>
//! bench imap-idle: p50_ms=<n> p99_ms=<n>
//! ```
//!
//! Dovecot (Debian's `dovecot-imapd`) runs as a child process; deskgate runs in this process
//! (its runtime does nothing else meanwhile) with a fresh state directory and
//! `initial_sync = "all"`, and is timed from start-up until the processor has applied every
//! mail, i.e. until the events are in the outbox.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;

use test_kit::dovecot::{sample_mail, Dovecot, PASSWORD};

pub async fn run(messages: usize, idle_samples: usize, batch_size: u32) -> anyhow::Result<()> {
    let dovecot = Dovecot::start();
    let tag = format!("bench{}", fastrand::u32(..));
    let started = Instant::now();
    fill(&dovecot, &tag, messages).await?;
    eprintln!("  appended {messages} mails in {:.1?}", started.elapsed());

    let baseline = bare_fetch(&dovecot, messages).await?;
    eprintln!("  baseline: UID FETCH 1:* BODY.PEEK[] in {baseline:.2?}");

    let state = tempfile::tempdir()?;
    let password = dovecot.password_file(PASSWORD);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = \"{}\"\n[log]\nfilter = \"warn\"\n\
         [events]\nrequire_token = false\n{}",
        state.path().join("state").display(),
        dovecot.channel_toml(
            "mail",
            "INBOX",
            &password,
            &format!("initial_sync = \"all\"\nbatch_size = {batch_size}")
        )
    );
    let config = deskgate::config::Config::parse(&toml).map_err(|p| anyhow::anyhow!("{p}"))?;
    let started = Instant::now();
    let app = deskgate::app::App::start(config).await?;
    eprintln!("  deskgate: started in {:.2?}", started.elapsed());
    let addr = app.local_addr;
    loop {
        let status = crate::servers::get_json(addr, "/v1/status").await?;
        let applied = status["processor"]["cursor"].as_u64().unwrap_or(0);
        if applied >= messages as u64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "deskgate applied only {applied} of {messages} mails in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ingest = started.elapsed();
    eprintln!("  deskgate: ingested to the outbox in {ingest:.2?}");
    let (deskgate, base) = (
        messages as f64 / ingest.as_secs_f64(),
        messages as f64 / baseline.as_secs_f64(),
    );
    println!(
        "bench imap-{messages}: deskgate={deskgate:.0} baseline={base:.0} ratio={:.2}",
        deskgate / base
    );

    let latencies = idle_latency(&dovecot, addr, &tag, idle_samples).await?;
    println!(
        "bench imap-idle: p50_ms={} p99_ms={}",
        latencies.value_at_quantile(0.5),
        latencies.value_at_quantile(0.99)
    );
    app.shutdown_token().cancel();
    app.wait().await;
    Ok(())
}

/// Appends the mails over four IMAP connections at once.
async fn fill(dovecot: &Dovecot, tag: &str, messages: usize) -> anyhow::Result<()> {
    let lanes = 4;
    let appends = (0..lanes).map(|lane| {
        let mails: Vec<Vec<u8>> = (lane..messages)
            .step_by(lanes)
            .map(|i| sample_mail(tag, i))
            .collect();
        async move { dovecot.append("INBOX", &mails).await }
    });
    futures::future::join_all(appends).await;
    Ok(())
}

/// The least the same job needs: one session, one `UID FETCH 1:* BODY.PEEK[]`, every body read.
async fn bare_fetch(dovecot: &Dovecot, messages: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut session = dovecot.session().await;
    session.select("INBOX").await?;
    let mut stream = session.uid_fetch("1:*", "(UID BODY.PEEK[])").await?;
    let (mut count, mut bytes) = (0usize, 0usize);
    while let Some(fetch) = stream.next().await {
        if let Some(body) = fetch?.body() {
            count += 1;
            bytes += body.len();
        }
    }
    let elapsed = started.elapsed();
    drop(stream);
    anyhow::ensure!(count == messages, "fetched {count} of {messages} mails");
    eprintln!("  baseline read {bytes} bytes");
    let _ = session.logout().await;
    Ok(elapsed)
}

/// From the start of an APPEND until `GET /v1/events` (long-polling) returns the event.
async fn idle_latency(
    dovecot: &Dovecot,
    addr: SocketAddr,
    tag: &str,
    samples: usize,
) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut session = dovecot.session().await;
    for i in 0..samples {
        let after = crate::servers::get_json(addr, "/v1/status").await?["outbox"]["last_seq"]
            .as_u64()
            .context("the outbox position")?;
        // Let deskgate settle back into IDLE before the next mail.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mail = sample_mail(&format!("{tag}-idle"), i);
        let started = Instant::now();
        session.append("INBOX", None, None, &mail).await?;
        let page =
            crate::servers::get_json(addr, &format!("/v1/events?after={after}&wait=10")).await?;
        anyhow::ensure!(
            page["events"].as_array().is_some_and(|e| !e.is_empty()),
            "IDLE mail {i} did not become an event within 10 s"
        );
        histogram.record(started.elapsed().as_millis() as u64)?;
    }
    let _ = session.logout().await;
    Ok(histogram)
}
