//! A real SMTP server on loopback: Debian's aiosmtpd writing every message into a Maildir,
//! stopped and started again on the same port (an outage).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::wait_for_port;

/// aiosmtpd on a loopback port, delivering every message into `dir` (a Maildir).
pub struct Smtpd {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    handler: &'static str,
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

    fn start_with(dir: &Path, port: u16, handler: &'static str) -> Smtpd {
        // Python's Maildir creates its subfolders only when the folder itself is new.
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.join(sub)).expect("the Maildir folders");
        }
        let mut smtpd = Smtpd {
            child: None,
            port,
            dir: dir.to_owned(),
            handler,
        };
        smtpd.restart();
        smtpd
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server again on the same port and Maildir; waits until it accepts.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "aiosmtpd already running");
        // Debian's module is only visible to Debian's python (scripts/test.sh installs it).
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", self.handler])
            .env(
                "PYTHONPATH",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            )
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd runs (apt-get install python3-aiosmtpd)");
        self.child = Some(child);
        wait_for_port(self.port, "aiosmtpd");
    }

    /// Stops the server (SIGKILL): connections drop and new ones are refused.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("aiosmtpd running");
        child.kill().expect("SIGKILL is delivered");
        child.wait().expect("aiosmtpd is reaped");
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

/// Every mail of a Maildir, raw, in delivery order.
pub fn maildir(dir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            files.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    // In delivery order: by the time the server wrote each file, then (file times are coarse)
    // by the per-process counter in Python's Maildir names, `{secs}.M{usecs}P{pid}Q{n}.{host}`.
    let counter = |f: &PathBuf| -> u64 {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let after_q = name
            .split_once('Q')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let digits: String = after_q.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or(0)
    };
    files.sort_by_key(|f| {
        (
            std::fs::metadata(f).and_then(|m| m.modified()).ok(),
            counter(f),
        )
    });
    files
        .into_iter()
        .filter_map(|f| std::fs::read(f).ok())
        .collect()
}
