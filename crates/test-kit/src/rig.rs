//! The set-up `chaos` and `soak` share: the real `deskgate` binary (a child process) with
//! every kind of channel, and the real peers it talks to, each on a free loopback port.
//!
//! - channels `api`, `form`, `chat` (signed), `wa` (WhatsApp, signed), `fb` (Messenger,
//!   signed) and `mail`, pulling a Dovecot mailbox over IMAP;
//! - acknowledgements of new tickets on `api`, `form` and `mail` by SMTP to an aiosmtpd;
//! - a NATS JetStream sink on a `nats-server -js` started here (never the machine's 4222);
//! - the state directory on a tmpfs of its own, so that a full disk is a real `ENOSPC`; with
//!   power cuts on, under a lazy filesystem whose backing folder is on that tmpfs (see
//!   [`crate::lazyfs`]), so that a cut loses what was not fsynced;
//! - a control API token, for a harness that acts as the ticket store (the soak's agent).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::RwLock;

use crate::daemon::{free_port, Daemon};
use crate::dovecot::{Dovecot, PASSWORD};
use crate::lazyfs::LazyFs;
use crate::nats::NatsServer;
use crate::smtpd::Smtpd;
use crate::tmpfs::Tmpfs;

/// The JetStream stream the sink publishes to, and its subject prefix.
pub const STREAM: &str = "CHAOS";
pub const SUBJECT_PREFIX: &str = "chaos.events";
/// The channels whose new tickets are acknowledged by mail.
pub const ACKNOWLEDGED: [&str; 3] = ["api", "form", "mail"];
/// Where, under the rig's root, the control token is.
const CONTROL_TOKEN_FILE: &str = "secrets/control_token";

/// The `deskgate` binary to run: the given path, or [`crate::daemon_bin`].
pub fn deskgate_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = given.unwrap_or_else(crate::daemon_bin);
    anyhow::ensure!(
        path.is_file(),
        "no deskgate binary at {} (build it with `cargo build -p deskgate`, or pass --deskgate)",
        path.display()
    );
    Ok(path)
}

pub struct Options {
    /// The `deskgate` binary to run.
    pub deskgate: PathBuf,
    /// The size of the state directory's filesystem.
    pub disk_bytes: u64,
    /// Extra TOML for the config (`[retention]`, `[routing]` tables): appended, so it must not
    /// repeat a table the rig writes.
    pub extra: String,
    /// The database's page cache (`state.cache_capacity_bytes`); `None`: deskgate's default.
    pub cache_bytes: Option<u64>,
    /// The state directory on a lazy filesystem, for the power-cut fault.
    pub power_cuts: bool,
}

pub struct Rig {
    pub daemon: Daemon,
    /// Shared with the mail load, which opens sessions while faults restart the server.
    pub dovecot: Arc<RwLock<Dovecot>>,
    pub nats: NatsServer,
    pub smtpd: Smtpd,
    /// The lazy filesystem holding the state directory, when power cuts are on; before `disk`,
    /// which holds its backing folder.
    pub lazy: Option<LazyFs>,
    pub disk: Tmpfs,
    pub disk_bytes: u64,
    pub state_dir: PathBuf,
    /// The bearer token of the control API (`/v1/control/...`).
    pub control_token: String,
    // Last: removed after every process above has stopped.
    _dir: tempfile::TempDir,
}

impl Rig {
    pub async fn start(options: Options) -> anyhow::Result<Rig> {
        let dir = tempfile::Builder::new().prefix("deskgate-rig").tempdir()?;
        let root = dir.path().to_owned();
        let (dovecot, nats, smtpd, disk) = tokio::task::block_in_place(|| {
            let disk = Tmpfs::mount(&root.join("disk"), &options.disk_bytes.to_string());
            let smtpd = Smtpd::start(&root.join("maildir"), free_port());
            (
                Dovecot::start(),
                NatsServer::start(&root.join("nats")),
                smtpd,
                disk,
            )
        });
        let lazy = match options.power_cuts {
            true => Some(
                tokio::task::block_in_place(|| {
                    let backing = disk.0.join("backing");
                    LazyFs::mount(&root.join("lazyfs"), &backing, &root.join("lazy"))
                })
                .map_err(|error| anyhow::anyhow!(error))?,
            ),
            false => None,
        };
        let state_dir = match &lazy {
            Some(lazy) => lazy.mount.join("state"),
            None => disk.0.join("state"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = root.join("deskgate.toml");
        let control_token = format!("rig-{}", uuid::Uuid::new_v4().simple());
        let state = (state_dir.as_path(), options.cache_bytes);
        let text = config_text(&root, addr, state, (&dovecot, &nats, &smtpd))?;
        std::fs::write(root.join(CONTROL_TOKEN_FILE), &control_token)
            .context("writing the control token")?;
        std::fs::write(&config, text + &options.extra).context("writing the config")?;
        let daemon = Daemon::launch(&options.deskgate, &root, config, addr).await;
        first_sync(&daemon).await?;
        Ok(Rig {
            daemon,
            dovecot: Arc::new(RwLock::new(dovecot)),
            nats,
            smtpd,
            lazy,
            disk,
            disk_bytes: options.disk_bytes,
            state_dir,
            control_token,
            _dir: dir,
        })
    }

    pub fn base_url(&self) -> String {
        self.daemon.url("")
    }
}

/// Waits until deskgate has synced the mailbox once. Mail already in a folder at the first
/// sync is history (imported: no acknowledgement, no trigger), so load that started earlier
/// would find its first mails unacknowledged, as it did on a slow CI machine.
async fn first_sync(daemon: &Daemon) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = match reqwest::get(daemon.url("/readyz")).await {
            Ok(response) => response.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        let synced = ready
            .as_ref()
            .is_some_and(|r| !r["mailboxes"]["mail"]["last_sync"].is_null());
        if synced {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "deskgate did not sync its mailbox within 60 s: /readyz says {ready:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The daemon's config: every channel kind, acknowledgements by SMTP, the NATS sink, the
/// control token.
fn config_text(
    root: &Path,
    addr: SocketAddr,
    (state, cache_bytes): (&Path, Option<u64>),
    (dovecot, nats, smtpd): (&Dovecot, &NatsServer, &Smtpd),
) -> anyhow::Result<String> {
    // Extra TOML cannot reopen the [state] table, so the cache size goes in here.
    let cache = cache_bytes
        .map(|bytes| format!("cache_capacity_bytes = {bytes}\n"))
        .unwrap_or_default();
    let meta = crate::mixed::write_secrets(&root.join("secrets"))?;
    let chat_secret = root.join("secrets/chat_secret");
    std::fs::write(&chat_secret, crate::mixed::APP_SECRET)?;
    // The load comes from one address: the per-client limits of public channels stay out of it.
    let unlimited = "rate_limit = { per_minute = 60000000, burst = 1000000 }";
    let mail = dovecot.channel_toml(
        "mail",
        "INBOX",
        &dovecot.password_file(PASSWORD),
        "initial_sync = \"all\"\nbatch_size = 50",
    );
    Ok(format!(
        r#"[server]
listen = "{addr}"
shutdown_grace_secs = 5

[state]
dir = "{state}"
min_free_bytes = 4194304
{cache}
[events]
require_token = false

[log]
filter = "info"

[control]
token_files = ["{control_token}"]

[channels.api]
kind = "api"

[channels.form]
kind = "form"
form = {{ {unlimited} }}

[channels.chat]
kind = "chat"
chat = {{ secret_file = "{chat_secret}", {unlimited} }}

[channels.wa]
kind = "whatsapp"
{meta}

[channels.fb]
kind = "messenger"
{meta}

{mail}
[outbound]
retry_base_ms = 100
retry_max_secs = 2
auto_mail_per_recipient_per_hour = 1000000

[outbound.mailboxes.support]
address = "support@example.test"
company_name = "Chaos"
channels = {acknowledged:?}
acknowledge_new_tickets = true

[outbound.mailboxes.support.smtp]
host = "127.0.0.1"
port = {smtp}
tls = "plain"
send_timeout_secs = 5

[sinks.js]
kind = "nats"

[sinks.js.nats]
servers = ["{nats}"]
stream = "{STREAM}"
subject_prefix = "{SUBJECT_PREFIX}"
ack_timeout_ms = 1000
backoff_min_ms = 50
backoff_max_ms = 1000
duplicate_window_secs = 86400

"#,
        state = state.display(),
        chat_secret = chat_secret.display(),
        control_token = root.join(CONTROL_TOKEN_FILE).display(),
        acknowledged = ACKNOWLEDGED,
        smtp = smtpd.port,
        nats = nats.url(),
    ))
}
