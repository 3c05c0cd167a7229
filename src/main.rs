//! The `deskgate` command: run the daemon, or check a config file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deskgate::app::{App, Stopped};
use deskgate::config::{Config, ConfigError, LogConfig, LogFormat};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// See deskgate::allocator for why.
#[global_allocator]
static ALLOCATOR: deskgate::allocator::Allocator = deskgate::allocator::Allocator;

#[derive(Parser)]
#[command(
    name = "deskgate",
    version,
    about = "Channel gateway in front of a help desk's ticket store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT; SIGHUP reloads the config.
    Run {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 when valid; otherwise print every problem and exit 64
    /// (EX_USAGE) for an invalid config, 1 for a file that cannot be read or a state directory
    /// that cannot be checked.
    CheckConfig {
        /// The config file.
        path: PathBuf,
        /// A (stopped) daemon's state directory: also refuse removing a pipeline or status
        /// that stored tickets are in, unless a `[[routing.moves]]` entry says where they go.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Show what the pipeline would make of an input, without a daemon.
    Inspect {
        #[command(subcommand)]
        what: Inspect,
    },
    /// List or retry quarantined inputs, through a running daemon's control API.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
        /// The control API, such as http://127.0.0.1:8080 (default: from --config).
        #[arg(long, global = true)]
        url: Option<String>,
        /// A file holding a control token (default: the config's first token file).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
        /// The daemon's config file, for its address and token.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Have the running daemon write a consistent copy of its state into DEST, a new
    /// directory on its host; a daemon started on DEST as its state.dir carries on from it.
    Backup {
        /// The directory to create (absolute, on the daemon's host; it must not exist yet).
        dest: PathBuf,
        /// The control API, such as http://127.0.0.1:8080 (default: from --config).
        #[arg(long)]
        url: Option<String>,
        /// A file holding a control token (default: the config's first token file).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The daemon's config file, for its address and token.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Inspect {
    /// Print, as JSON, what a state directory holds by tree and key prefix, and how much of
    /// its size is live data (offline: the daemon must not be running on it).
    State {
        /// The state directory (`state.dir`).
        dir: PathBuf,
    },
    /// Print, as JSON, the items the pipeline would record from one webhook payload.
    Webhook {
        /// The channel kind the payload is for.
        #[arg(long, value_parser = ["messenger", "whatsapp", "chat", "form"])]
        channel: String,
        /// The payload file (the raw body).
        file: PathBuf,
    },
    /// Print a raw mail as JSON, as the email channel reads it; exit 1 with the reason when it
    /// would be quarantined.
    Mail {
        /// The raw RFC 5322 file.
        file: PathBuf,
        /// A config file whose channel options apply (with --channel).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The email channel whose options apply.
        #[arg(long)]
        channel: Option<String>,
    },
}

#[derive(Subcommand)]
enum QuarantineAction {
    /// List entries (JSON), oldest first.
    List {
        /// Start after this journal seq.
        #[arg(long)]
        after: Option<u64>,
    },
    /// Re-read an entry's raw input with the current parser and journal the result.
    Retry {
        /// The entry's journal seq.
        seq: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { path, state } => {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    eprintln!("cannot read {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
            };
            check_config(&path, &text, state.as_deref())
        }
        Command::Inspect {
            what:
                Inspect::Mail {
                    file,
                    config,
                    channel,
                },
        } => deskgate::cli::inspect_mail(&file, config.as_deref(), channel.as_deref()),
        Command::Inspect {
            what: Inspect::Webhook { channel, file },
        } => inspect_webhook(&channel, &file),
        Command::Inspect {
            what: Inspect::State { dir },
        } => deskgate::cli::inspect_state(&dir),
        Command::Quarantine {
            action,
            url,
            token_file,
            config,
        } => {
            let target =
                match deskgate::cli::ControlTarget::resolve(url, token_file, config.as_deref()) {
                    Ok(target) => target,
                    Err(error) => {
                        eprintln!("{error}");
                        return ExitCode::from(2);
                    }
                };
            let (retry, after) = match action {
                QuarantineAction::List { after } => (None, after),
                QuarantineAction::Retry { seq } => (Some(seq), None),
            };
            block_on(deskgate::cli::quarantine(target, retry, after))
        }
        Command::Backup {
            dest,
            url,
            token_file,
            config,
        } => match deskgate::cli::ControlTarget::resolve(url, token_file, config.as_deref()) {
            Ok(target) => block_on(deskgate::cli::backup(target, &dest)),
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(2)
            }
        },
        Command::Run { config: path } => run_daemon(&path),
    }
}

/// `deskgate run`: loads the config, starts logging and serves until stopped.
fn run_daemon(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let log_filter = init_logging(&config.log);
    log_warnings(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("deskgate")
        .build();
    let outcome = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(path, config, log_filter)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("deskgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command that talks to the daemon on a small runtime of its own.
fn block_on(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(command),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn inspect_webhook(channel: &str, file: &std::path::Path) -> ExitCode {
    let outcome = (|| -> anyhow::Result<String> {
        let kind: deskgate::config::ChannelKind =
            serde_json::from_value(serde_json::Value::String(channel.to_owned()))?;
        let body = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        // Form files are stored as blobs on the way; keep them out of any real state.
        let scratch = tempfile::tempdir()?;
        let blobs = deskgate::store::Blobs::open(scratch.path())?;
        let items = deskgate::channels::inspect::inspect(kind, body.into(), &blobs)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        Ok(serde_json::to_string_pretty(&items)?)
    })();
    match outcome {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("deskgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &Path, config: Config, log_filter: LogFilter) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut current = config.clone();
    let app = App::start(config).await.map_err(|error| {
        // Said in check-config's words, naming the file to edit.
        match error.downcast::<deskgate::app::Stranding>() {
            Ok(deskgate::app::Stranding(problems)) => anyhow::Error::new(ConfigError {
                file: path.to_owned(),
                problems,
            }),
            Err(error) => error,
        }
    })?;
    // Without NOTIFY_SOCKET (not under systemd) these are no-ops.
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        // Ping at half the timeout from the runtime itself: a wedged runtime stops the pings.
        tokio::spawn(async move {
            let mut every = tokio::time::interval(timeout / 2);
            loop {
                every.tick().await;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        });
    }
    let stopped_itself = app.shutdown_token();
    let mut greetings = deskgate::outbound::profile::Greetings::new(app.shutdown_token());
    greetings.apply(&current.outbound);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                current = reload(path, current, &app, &log_filter);
                greetings.apply(&current.outbound);
            }
            // The app stopped itself (storage recovery).
            () = stopped_itself.cancelled() => break,
        }
    }
    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    app.shutdown_token().cancel();
    if app.wait().await == Stopped::RestartRequested {
        restart_in_place();
    }
    Ok(())
}

/// Replaces this process with a fresh start of the same command line, keeping the PID (so
/// systemd and other supervisors see one long-running service). Returns only if that fails, and
/// then the process exits with an error for its supervisor to restart it.
fn restart_in_place() -> ! {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "deskgate".into());
    // /proc/self/exe still names this binary when its file was replaced or removed meanwhile
    // (a package upgrade), where current_exe() gives a path that no longer exists.
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .exec();
    eprintln!("deskgate: cannot restart in place ({error}); exiting for the supervisor to restart");
    #[allow(clippy::disallowed_methods)] // shutdown and the final flush already ran
    std::process::exit(75)
}

/// Re-reads the config on SIGHUP. A config that does not validate changes nothing. Of a valid
/// one, what can change while running is applied (see `deskgate::live`), and its moves of
/// stored tickets are journaled; what needs a restart is named in the log. Returns the config
/// now running.
fn reload(path: &Path, current: Config, app: &App, log_filter: &LogFilter) -> Config {
    // A config that would strand stored tickets (a pipeline or status removed that they are
    // in) is refused like an invalid one; an invalid one is reported by the reload itself.
    if let Ok(next) = Config::load(path) {
        let stranded = app.stranded_by(&next);
        if !stranded.is_empty() {
            let error = ConfigError {
                file: path.to_owned(),
                problems: stranded,
            };
            tracing::error!("configuration not reloaded, keeping the running one: {error}");
            metrics::counter!("deskgate_config_reloads_total", "outcome" => "rejected")
                .increment(1);
            return current;
        }
    }
    let reloaded = match app.live().reload(&current, path) {
        Ok(reloaded) => reloaded,
        Err(error) => {
            tracing::error!("configuration not reloaded, keeping the running one: {error}");
            metrics::counter!("deskgate_config_reloads_total", "outcome" => "rejected")
                .increment(1);
            return current;
        }
    };
    if !reloaded.restart_needed.is_empty() {
        tracing::warn!(
            settings = reloaded.restart_needed.join(", "),
            "these changes take effect only after a restart"
        );
    }
    metrics::counter!("deskgate_config_reloads_total", "outcome" => "applied").increment(1);
    // Said before a new log filter applies, which may silence info lines.
    tracing::info!(
        "configuration reloaded: users, teams, routing, templates and rate limits in force"
    );
    let new = reloaded.running;
    // Stored tickets in what the new config removed, and its moves say where: they go now.
    app.apply_moves(&new);
    log_warnings(&new);
    if new.log.filter != current.log.filter {
        match engine_quiet(&new.log.filter).map(|f| log_filter.reload(f)) {
            Ok(Ok(())) => {}
            _ => tracing::error!(filter = %new.log.filter, "log filter not applied"),
        }
    }
    new
}

type LogFilter = reload::Handle<EnvFilter, Registry>;

/// The configured filter, with the storage engine's routine info lines (table flushes,
/// compactions) held to warnings unless the filter names the engine itself.
fn engine_quiet(spec: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut filter = EnvFilter::try_new(spec)?;
    for engine in ["fjall", "lsm_tree"] {
        if !spec.contains(engine) {
            filter = filter.add_directive(format!("{engine}=warn").parse()?);
        }
    }
    Ok(filter)
}

/// The problems of a config that would strand the tickets stored in `dir`; of one that does
/// not, says how many tickets its moves will take. `Err` when the state cannot be read.
fn check_stranded(config: &Config, path: &Path, dir: &Path) -> Result<Option<ConfigError>, String> {
    let store = deskgate::store::Store::open(dir).map_err(|e| {
        format!(
            "{}: cannot open the state (is deskgate running?): {e}",
            dir.display()
        )
    })?;
    // A state an older version wrote is read as a start would fold it, but left as it is.
    let usage = deskgate::tickets::pipeline_usage(&store).map_err(|e| e.to_string())?;
    let problems = deskgate::tickets::stranded(config, &usage);
    if problems.is_empty() {
        let due = deskgate::tickets::moves_due(&deskgate::tickets::moves_of(config), &usage);
        if due > 0 {
            eprintln!("note: routing.moves will move {due} stored tickets at the next start");
        }
        return Ok(None);
    }
    Ok(Some(ConfigError {
        file: path.to_owned(),
        problems,
    }))
}

/// What the config promises but cannot keep, as check-config says it.
fn log_warnings(config: &Config) {
    for warning in config.warnings() {
        tracing::warn!("config: {warning}");
    }
}

/// Logs to stderr (journald adds its own timestamps and keeps JSON fields with `json`).
fn init_logging(log: &LogConfig) -> LogFilter {
    // RUST_LOG wins over the config file so an operator can turn up one module without an edit.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .or_else(|| engine_quiet(&log.filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let output = match log.format {
        LogFormat::Human => output.boxed(),
        LogFormat::Json => output.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
    handle
}

/// `sysexits.h`'s EX_USAGE: what `check-config` exits with on an invalid config, so that a
/// deployment script can tell a wrong config from a file it could not read (1).
const EX_USAGE: u8 = 64;

fn check_config(path: &Path, text: &str, state: Option<&Path>) -> ExitCode {
    let config = match Config::from_text(path, text) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EX_USAGE);
        }
    };
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    if let Some(dir) = state {
        match check_stranded(&config, path, dir) {
            Ok(None) => {}
            Ok(Some(stranding)) => {
                eprintln!("{stranding}");
                return ExitCode::from(EX_USAGE);
            }
            Err(unreadable) => {
                eprintln!("{unreadable}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}: ok", path.display());
    ExitCode::SUCCESS
}
