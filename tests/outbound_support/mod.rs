//! Shared by the outbound tests: a real SMTP server (Debian's aiosmtpd) writing a Maildir, the
//! corpus location, and a control API client.
#![allow(dead_code)] // each test binary uses a different part

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "outbound-test-token-0123456789";

/// aiosmtpd on a loopback port, delivering every message into `dir` (a Maildir).
pub struct Smtpd {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Smtpd {
    pub fn start(dir: &Path, port: u16) -> Smtpd {
        Smtpd::start_with(dir, port, "aiosmtpd.handlers.Mailbox")
    }

    /// Like [`Smtpd::start`], but refusing (550) every recipient whose address starts with
    /// `refuse` (`refusing_handler.py` beside this file).
    pub fn start_refusing(dir: &Path, port: u16) -> Smtpd {
        Smtpd::start_with(dir, port, "refusing_handler.Refusing")
    }

    fn start_with(dir: &Path, port: u16, handler: &str) -> Smtpd {
        // Python's Maildir creates its subfolders only when the folder itself is new.
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Debian's module is only visible to Debian's python (scripts/test.sh installs it).
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", handler])
            .env(
                "PYTHONPATH",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/outbound_support"),
            )
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd runs (apt-get install python3-aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtpd {
            child: Some(child),
            port,
            dir: dir.to_owned(),
        }
    }

    /// Every message delivered so far, raw.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        maildir(&self.dir)
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} mails, have {}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn maildir(dir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            files.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    // In delivery order: by the time the server wrote each file, then (file times are coarse)
    // by the per-process counter in Python's Maildir names, `{secs}.M{usecs}P{pid}Q{n}.{host}`.
    let counter = |f: &PathBuf| -> u64 {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let after_q = name
            .split_once('Q')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let digits: String = after_q.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or(0)
    };
    files.sort_by_key(|f| {
        (
            std::fs::metadata(f).unwrap().modified().unwrap(),
            counter(f),
        )
    });
    files
        .into_iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect()
}

/// One header of a raw mail, unfolded, or `None`.
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let head = head
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let prefix = format!("{}:", name.to_lowercase());
    unfolded
        .lines()
        .find(|l| l.to_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
}

/// The plain-text body of a mail, decoded.
pub fn text_body(raw: &[u8]) -> String {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    message.body_text(0).unwrap_or_default().into_owned()
}

pub fn html_body(raw: &[u8]) -> Option<String> {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    message.body_html(0).map(|h| h.into_owned())
}

/// The shared corpus; tests fail (never skip) without it.
pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("DESKGATE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    assert!(
        dir.is_dir(),
        "the shared corpus is missing at {}",
        dir.display()
    );
    dir
}

/// Writes the control token file and returns the `[control]` table naming it.
pub fn control_toml(dir: &Path) -> String {
    let path = dir.join("control-token");
    std::fs::write(&path, TOKEN).unwrap();
    format!("[control]\ntoken_files = [\"{}\"]\n\n", path.display())
}

pub async fn control_post(
    client: &reqwest::Client,
    url: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = client.post(url).bearer_auth(TOKEN).json(body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

pub fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}
