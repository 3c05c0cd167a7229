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
    /// Show what deskgate would make of an input, without running the daemon.
    Inspect {
        #[command(subcommand)]
        what: Inspect,
    },
}

#[derive(Subcommand)]
enum Inspect {
    /// Print, as JSON, the items the pipeline would record from one webhook payload.
    Webhook {
        /// The channel kind the payload is for.
        #[arg(long, value_parser = ["messenger", "whatsapp", "chat", "form"])]
        channel: String,
        /// The payload file (the raw body).
        file: PathBuf,
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
            what: Inspect::Webhook { channel, file },
        } => inspect_webhook(&channel, &file),
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
