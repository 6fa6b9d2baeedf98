//! The `keypin` command line: parse arguments, set up logging, load configuration,
//! start.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use keypin::config::SessionKey;
use keypin::config::{Config, DEFAULT_CONFIG_PATH};
use keypin::ops::app::App;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, filter};

/// jemalloc rather than the system allocator: with its background thread (see
/// `keypin::transport::allocator`) pages freed after a burst go back to the system within
/// some seconds, also while keypin idles, where glibc keeps them resident
/// (docs/benchmarks.md, Memory).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for an invalid configuration.
const EXIT_INVALID_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(version, about = "TLS reverse proxy that puts PIN login in front of legacy web apps")]
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
        #[command(flatten)]
        log: LogArgs,
    },
    /// A one-command tour: the gateway in front of a built-in legacy app, with demo
    /// PINs, a development certificate and no Azure.
    Demo {
        /// Address of the TLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Run only the demo's built-in legacy app (HTTP Basic auth, plain HTTP), e.g.
    /// as the upstream in docker-compose.
    DemoApp {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Validate a configuration file and print warnings; exit 0 if valid, 2 if not.
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Print a fresh random session key (base64 of 64 bytes).
    GenKey,
    /// Print the name of the secret to create for a PIN read on standard input
    /// (never from the command line; never printed back).
    SecretName {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Make a fresh random PIN of `pin.min_digits` digits instead, and print it
        /// with its secret name.
        #[arg(long)]
        random_pin: bool,
    },
    /// The brute-force budget of a configuration: worst-case guesses for one and
    /// for many addresses, and the chance they hit a PIN in use.
    Limits {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Addresses (IPv6: /64s) the attacker controls.
        #[arg(long, default_value_t = 1000)]
        attackers: u64,
        /// Span of the attack, in days.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Valid PINs in use.
        #[arg(long, default_value_t = 1000)]
        users: u64,
    },
}

#[derive(Args)]
struct LogArgs {
    /// Append the audit log (one JSON line per security event) to this file
    /// instead of stdout.
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// Format of the operational log on stderr: `auto` is text on a terminal and
    /// JSON lines otherwise.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        config: PathBuf::from(DEFAULT_CONFIG_PATH),
        log: LogArgs { audit_log: None, log_format: LogFormat::Auto },
    });
    match command {
        Command::Serve { config, log } => report(init_logging(&log).and_then(|()| serve(&config))),
        Command::Demo { listen, log } => report(init_logging(&log).and_then(|()| demo(listen))),
        Command::DemoApp { listen } => report(
            init_logging(&LogArgs { audit_log: None, log_format: LogFormat::Auto }).and_then(|()| demo_app(listen)),
        ),
        Command::CheckConfig { config } => check_config(&config),
        Command::Limits { config, attackers, days, users } => match Config::load_budget(&config) {
            Ok(config) => {
                let scenario = keypin::state::limits::budget::Scenario { attackers, days, users };
                println!("keypin limits: {}", config.source);
                print!(
                    "{}",
                    keypin::state::limits::budget::report(
                        &config.limits,
                        config.pin.min_digits,
                        config.pin.max_digits,
                        scenario
                    )
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
        },
        Command::SecretName { config, random_pin } => secret_name(&config, random_pin),
        Command::GenKey => {
            println!("{}", &*SessionKey::generate().to_base64());
            ExitCode::SUCCESS
        }
    }
}

/// `keypin secret-name`: the secret name for a PIN on stdin, or for a random PIN.
fn secret_name(path: &Path, random: bool) -> ExitCode {
    use keypin::ops::provision::{random_pin, secret_name_for};
    use std::io::Read as _;
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    let mut input = zeroize::Zeroizing::new(String::new());
    if random {
        *input = random_pin(&config.pin).to_string();
    } else if std::io::stdin().take(1024).read_to_string(&mut input).is_err() {
        eprintln!("error: standard input is not text");
        return ExitCode::FAILURE;
    }
    match secret_name_for(&config.pin, &input) {
        Ok(name) if random => {
            println!("pin: {}\nsecret name: {name}", input.as_str());
            ExitCode::SUCCESS
        }
        Ok(name) => {
            println!("{name}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("keypin: {e:#}");
        ExitCode::FAILURE
    })
}

fn check_config(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            for message in e.messages() {
                eprintln!("error: {message}");
            }
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    keypin::transport::tls::install_default_provider();
    let loaded = keypin::ops::preflight::preflight(&config);
    for warning in keypin::ops::check::warnings(&config).iter().chain(&loaded.warnings) {
        eprintln!("warning: {}: {warning}", config.source);
    }
    if !loaded.errors.is_empty() {
        for e in &loaded.errors {
            eprintln!("error: {}: {e}", config.source);
        }
        return ExitCode::from(EXIT_INVALID_CONFIG);
    }
    println!("{}: valid ({} route(s))", config.source, config.routes.len());
    ExitCode::SUCCESS
}

/// Two streams: the operational log on stderr (`RUST_LOG` filters it, default
/// `info`), and the audit log as JSON lines on stdout or `--audit-log`.
fn init_logging(args: &LogArgs) -> anyhow::Result<()> {
    let audit_writer = match &args.audit_log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the audit log {}", path.display()))?;
            BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
        None => BoxMakeWriter::new(std::io::stdout),
    };
    let is_audit = |meta: &tracing::Metadata<'_>| meta.target() == keypin::observe::audit::TARGET;
    let audit = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(audit_writer)
        // Each filter says the most verbose level it lets through: without a hint,
        // tracing cannot turn off a callsite for good, and every trace-level span
        // of h2 and hyper reached these filters (a fifth of the CPU of an HTTP/2
        // request).
        .with_filter(filter::filter_fn(is_audit).with_max_level_hint(LevelFilter::INFO));
    let env_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ops_hint = env_filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let ops = if json {
        tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(terminal).boxed()
    };
    // The SDK's URLs hold secret names, so PINs: quiet whatever RUST_LOG says.
    let ops = ops.with_filter(env_filter).with_filter(
        filter::filter_fn(move |meta| !is_audit(meta) && keypin::observe::log::allowed(meta))
            .with_max_level_hint(ops_hint),
    );
    tracing_subscriber::registry().with(audit).with(ops).init();
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    keypin::transport::tls::install_default_provider();
    // Only the long-running commands, which build a runtime, start the thread.
    keypin::transport::allocator::start_background_purging();
    // One thread: it accepts and hands each connection to a worker, and runs the
    // admin listener and the upkeep. A second would wake beside it and find
    // nothing to do (docs/benchmarks.md, the seventh round).
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_INVALID_CONFIG));
        }
    };
    for warning in keypin::ops::check::warnings(&config) {
        tracing::warn!("{}: {warning}", config.source);
    }
    runtime()?.block_on(async {
        let app = App::bind(config).await?.watch(path.to_owned());
        let shutdown = shutdown_signal();
        let plain = app.plain_addr().map(|a| a.to_string());
        tracing::info!(listen = %app.local_addr(), admin = %app.admin_addr(), plain, "keypin listening");
        app.run(shutdown).await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn demo(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let demo = keypin::ops::demo::prepare(listen).await?;
        let shutdown = shutdown_signal();
        let url = format!("https://{}/", demo.app.local_addr());
        let cert = demo.dir.path().join("keypin.pem");
        tracing::info!(
            listen = %demo.app.local_addr(),
            admin = %demo.app.admin_addr(),
            app = %demo.app_addr,
            cert = %cert.display(),
            "keypin listening"
        );
        eprintln!("\nkeypin demo: open {url}");
        eprintln!("(a development certificate, {}: your browser will ask you to accept it)\n", cert.display());
        eprintln!("Demo PINs:");
        for (pin, user) in &demo.users {
            eprintln!("  {pin}  ->  {user}");
        }
        eprintln!("\nPress Ctrl-C to stop.\n");
        demo.app.run(shutdown).await;
        Ok(ExitCode::SUCCESS)
    })
}

fn demo_app(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (addr, app) = keypin::ops::demo::bind_legacy_app(listen).await?;
        let shutdown = shutdown_signal();
        tracing::info!(listen = %addr, "demo legacy app listening (plain HTTP, Basic auth)");
        tokio::select! {
            () = app => {}
            () = shutdown => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, before keypin reports that it listens, so an early signal stops it
/// gracefully instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
