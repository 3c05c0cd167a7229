//! Operator commands beside the daemon: `deskgate inspect mail FILE` and `deskgate inspect
//! state DIR` (offline), and
//! `deskgate quarantine list|retry` and `deskgate backup DEST` (over the control API: the
//! daemon owns the database, which only one process may open).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::channels::email::inspect;
use crate::config::{Config, EmailConfig};

/// Prints what a state directory holds (see [`crate::store::census`]).
pub fn inspect_state(dir: &Path) -> ExitCode {
    // Opening would create an empty database where there is none.
    if !crate::store::Store::holds_state(dir) {
        eprintln!(
            "{} holds no deskgate state (no deskgate-state marker and fjall/ database)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let census = crate::store::Store::open(dir).and_then(|store| store.census());
    match census {
        Ok(census) => {
            // A plain struct of numbers and strings always serialises.
            let json = serde_json::to_string_pretty(&census).expect("a census serialises");
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot read the state in {}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Prints the JSON view of a raw mail; exits 1 with the reason when it would be quarantined.
/// With a config and channel, that channel's email options apply.
pub fn inspect_mail(file: &Path, config: Option<&Path>, channel: Option<&str>) -> ExitCode {
    let options = match email_options(config, channel) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let raw = match std::fs::read(file) {
        Ok(raw) => raw,
        Err(error) => {
            eprintln!("cannot read {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    match inspect::view(&raw, &options) {
        Ok(view) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("{}: would be quarantined: {reason}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn email_options(config: Option<&Path>, channel: Option<&str>) -> Result<EmailConfig, String> {
    let Some(path) = config else {
        return Ok(EmailConfig::default());
    };
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let Some(id) = channel else {
        return Ok(EmailConfig::default());
    };
    config
        .channels
        .get(id)
        .map(|c| c.email_options())
        .ok_or_else(|| format!("{}: no channel {id:?}", path.display()))
}

/// Where the control API is and how to authenticate to it.
pub struct ControlTarget {
    /// `http://host:port`.
    pub url: String,
    pub token: String,
}

impl ControlTarget {
    /// From explicit flags, else from the daemon's config (its control listener, else its
    /// listener, and its first token file).
    pub fn resolve(
        url: Option<String>,
        token_file: Option<PathBuf>,
        config: Option<&Path>,
    ) -> Result<ControlTarget, String> {
        let config = config
            .map(|p| Config::load(p).map_err(|e| e.to_string()))
            .transpose()?;
        let url = url
            .or_else(|| {
                config.as_ref().map(|c| {
                    let addr = c.server.control_listen.unwrap_or(c.server.listen);
                    format!("http://{addr}")
                })
            })
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
        let token_file = token_file
            .or_else(|| config.and_then(|c| c.control.token_files.first().cloned()))
            .ok_or("give --token-file (or --config with control.token_files)")?;
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| format!("cannot read {}: {e}", token_file.display()))?;
        Ok(ControlTarget {
            url: url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        })
    }
}

/// `deskgate quarantine list` / `retry SEQ`: prints the API's JSON answer; exits 1 on an error
/// status.
pub async fn quarantine(target: ControlTarget, retry: Option<u64>, after: Option<u64>) -> ExitCode {
    let (method, path) = match (retry, after) {
        (Some(seq), _) => ("POST", format!("/v1/control/quarantine/{seq}/retry")),
        (None, Some(after)) => ("GET", format!("/v1/control/quarantine?after={after}")),
        (None, None) => ("GET", "/v1/control/quarantine".to_owned()),
    };
    match call(&target, method, &path, None).await {
        Ok(body) => {
            println!("{}", pretty(&body));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Calls the control API and returns the answer's body; an error status (exit code 1) or a
/// failure to reach the daemon (exit code 2) is printed.
async fn call(
    target: &ControlTarget,
    method: &str,
    path: &str,
    json: Option<&serde_json::Value>,
) -> Result<Bytes, ExitCode> {
    match request(target, method, path, json).await {
        Ok((status, body)) if status.is_success() => Ok(body),
        Ok((status, body)) => {
            eprintln!("{status}: {}", pretty(&body));
            Err(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("{}: {error}", target.url);
            Err(ExitCode::from(2))
        }
    }
}

/// An answer's JSON, pretty-printed (or its text when it is not JSON).
fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

/// `deskgate backup DEST`: asks the daemon for a consistent copy of its state in `dest` (a
/// new directory on the daemon's host), prints its progress about once a second and the
/// copy's size at the end. Exits 1 when the daemon refused or the backup failed.
pub async fn backup(target: ControlTarget, dest: &Path) -> ExitCode {
    let body = serde_json::json!({ "dest": dest });
    if let Err(code) = call(&target, "POST", "/v1/control/backup", Some(&body)).await {
        return code;
    }
    let mut printed = std::time::Instant::now();
    loop {
        // Polling an operator's one-off command: a fixed short interval is plenty.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let progress = match call(&target, "GET", "/v1/control/backup", None).await {
            Ok(body) => serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            Err(code) => return code,
        };
        let number = |field: &str| progress[field].as_u64().unwrap_or(0);
        let keys = format!(
            "backup: {}/{} keys",
            number("keys_copied"),
            number("keys_estimated")
        );
        match progress["status"].as_str() {
            Some("running") => {
                if printed.elapsed() >= std::time::Duration::from_secs(1) {
                    println!("{keys}");
                    printed = std::time::Instant::now();
                }
            }
            Some("done") => {
                println!("{keys}");
                let bytes = number("bytes");
                println!(
                    "backup: done: {} ({} blobs, journal up to {}, processor at {}), {:.1} MiB ({bytes} bytes)",
                    dest.display(),
                    number("blobs_copied"),
                    number("journal_seq"),
                    number("processor_cursor"),
                    bytes as f64 / (1024.0 * 1024.0),
                );
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!(
                    "backup failed: {}",
                    progress["error"].as_str().unwrap_or("?")
                );
                return ExitCode::FAILURE;
            }
        }
    }
}

async fn request(
    target: &ControlTarget,
    method: &str,
    path: &str,
    json: Option<&serde_json::Value>,
) -> Result<(http::StatusCode, Bytes), String> {
    let uri: http::Uri = format!("{}{path}", target.url)
        .parse()
        .map_err(|e| format!("bad url: {e}"))?;
    let authority = uri.authority().ok_or("the url needs a host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str())
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", target.token),
        );
    if json.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let body = json.map(|j| j.to_string()).unwrap_or_default();
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
