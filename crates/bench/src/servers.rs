//! The servers a bench measures, each run as a child process of the bench binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use deskgate::config::Config;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Subcommand)]
pub enum Server {
    /// A hyper server that reads each body and answers 202 with a small JSON body.
    Noop { port: u16 },
    /// deskgate itself, with an API channel `api`, a WhatsApp channel `wa` (secrets from
    /// [`test_kit::mixed::APP_SECRET`] written into `dir`) and state in `dir`.
    Deskgate { port: u16, dir: PathBuf },
    /// The bare durable journal server ([`crate::durable`]), appending to a file in `dir`.
    Durable { port: u16, dir: PathBuf },
}

pub async fn serve(server: Server) -> anyhow::Result<()> {
    match server {
        Server::Noop { port } => noop(port).await,
        Server::Durable { port, dir } => crate::durable::serve(port, dir).await,
        Server::Deskgate { port, dir } => {
            let meta = test_kit::mixed::write_secrets(&dir)?;
            let config = deskgate_config(
                port,
                &dir,
                &format!("[channels.wa]\nkind = \"whatsapp\"\n{meta}\n"),
            )?;
            let app = deskgate::app::App::start(config).await?;
            app.wait().await;
            Ok(())
        }
    }
}

/// The daemon's config for the ingest benches: listening on `port`, state in `dir`, an API
/// channel `api`, then `more` (further channels' TOML). Nothing is routed or sent.
pub fn deskgate_config(port: u16, dir: &Path, more: &str) -> anyhow::Result<Config> {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[state]\ndir = \"{}\"\n[channels.api]\nkind = \"api\"\n{more}",
        dir.display()
    );
    Config::parse(&toml).map_err(|problems| anyhow::anyhow!("{problems}"))
}

async fn noop(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    let answer = format!(
                        r#"{{"status":"accepted","duplicate":false,"bytes":{}}}"#,
                        body.len()
                    );
                    let response = hyper::Response::builder()
                        .status(202)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(answer)))
                        .expect("a static response is valid");
                    Ok::<_, hyper::Error>(response)
                },
            );
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A server child process, killed when dropped.
pub struct Child {
    pub addr: SocketAddr,
    process: tokio::process::Child,
}

impl Child {
    pub async fn noop() -> anyhow::Result<Child> {
        Child::spawn(|port| vec!["noop".into(), port.to_string()]).await
    }

    pub async fn deskgate(dir: &Path) -> anyhow::Result<Child> {
        let dir = dir.display().to_string();
        Child::spawn(move |port| vec!["deskgate".into(), port.to_string(), dir.clone()]).await
    }

    pub async fn durable(dir: &Path) -> anyhow::Result<Child> {
        let dir = dir.display().to_string();
        Child::spawn(move |port| vec!["durable".into(), port.to_string(), dir.clone()]).await
    }

    async fn spawn(args: impl Fn(u16) -> Vec<String>) -> anyhow::Result<Child> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let process = tokio::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(args(port))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting a server child")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "server on {addr} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Child { addr, process })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
    }
}

/// A bare HTTP/1.1 GET returning the JSON body.
pub async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("an HTTP response")?;
    let body = &response[start + 4..];
    // A refusal (a 401 once the events API wants a token) must say so, not read as no events.
    let status_line = String::from_utf8_lossy(&response[..start]);
    let status_line = status_line.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status_line.starts_with("HTTP/1.1 200"),
        "GET {path}: {status_line}: {}",
        String::from_utf8_lossy(body)
    );
    Ok(serde_json::from_slice(body)?)
}
