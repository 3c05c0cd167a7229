//! The `deskgate` command: run the daemon, or check a config file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deskgate::app::App;
use deskgate::config::{Config, LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

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
    /// Run the daemon until SIGTERM or SIGINT.
    Run {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 when valid, otherwise print every problem and exit 1.
    CheckConfig {
        /// The config file.
        path: PathBuf,
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
}

#[derive(Subcommand)]
enum Inspect {
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
        Command::CheckConfig { path } => match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        Command::Inspect {
            what:
                Inspect::Mail {
                    file,
                    config,
                    channel,
                },
        } => deskgate::cli::inspect_mail(&file, config.as_deref(), channel.as_deref()),
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
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(deskgate::cli::quarantine(target, retry, after)),
                Err(error) => {
                    eprintln!("{error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&config.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("deskgate")
                .build();
            let outcome = runtime
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(run(config)));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("deskgate: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let app = App::start(config).await?;
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    app.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop deskgate with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn init_logging(log: &LogConfig) {
    // RUST_LOG wins over the config file so an operator can turn up one module without an edit.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
