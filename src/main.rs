//! The `keypin` command line: parse arguments, load configuration, start.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use keypin::app::App;
use keypin::config::{Config, DEFAULT_CONFIG_PATH};
use keypin::secrets::SessionKey;

/// Exit status for an invalid configuration.
const EXIT_INVALID_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    version,
    about = "TLS reverse proxy that puts PIN login in front of legacy web apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default when no command is given).
    Serve {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate a configuration file and print warnings; exit 0 if valid, 2 if not.
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Print a fresh random session key (base64 of 64 bytes).
    GenKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        config: PathBuf::from(DEFAULT_CONFIG_PATH),
    });
    match command {
        Command::Serve { config } => run_or_report(serve(config)),
        Command::CheckConfig { config } => check_config(&config),
        Command::GenKey => {
            println!("{}", &*SessionKey::generate().to_base64());
            ExitCode::SUCCESS
        }
    }
}

fn run_or_report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keypin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("warning: {}: {warning}", config.source);
            }
            println!(
                "{}: valid ({} route(s))",
                config.source,
                config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn serve(path: PathBuf) -> anyhow::Result<()> {
    init_logging();
    keypin::tls::install_default_provider();
    let config = Config::load(&path).map_err(|e| {
        eprintln!("error: {e}");
        std::process::exit(i32::from(EXIT_INVALID_CONFIG));
    })?;
    for warning in config.warnings() {
        tracing::warn!("{}: {warning}", config.source);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let app = App::bind(config).await?;
        tracing::info!(listen = %app.local_addr(), admin = %app.admin_addr(), "keypin listening");
        app.run(shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
