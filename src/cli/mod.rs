//! The `tessera` command line: `serve` (default), `keys`, `healthcheck`;
//! the operator's `users`, `clients` and `events` commands are in
//! `admin.rs`.

mod admin;

pub use admin::{ClientsCommand, EventsArgs, UsersCommand};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::clock::Clock;
use crate::config::{Config, LogFormat, SigningAlg};
use crate::crypto::keys::{KeyDir, KeyError, KeySet};
use crate::domain::audit::{Actor, Audit, Event, EventType};
use crate::{App, StartError, Stores};

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "OAuth 2.0 authorization server and user service"
)]
pub struct Cli {
    /// Configuration file (default: ./tessera.toml if present). TESSERA_* variables override it.
    #[arg(long, global = true, env = "TESSERA_CONFIG_FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage signing keys in the keys directory.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// List audit events, newest first.
    Events(EventsArgs),
    /// Exit 0 if the local server is ready (`GET /readyz`), 1 if not: for
    /// container health checks, where no curl is installed.
    Healthcheck {
        /// Default: `http://127.0.0.1:<port of TESSERA_LISTEN>/readyz`.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key; it signs from now on (the newest active key signs).
    Generate {
        #[arg(long, default_value = "RS256")]
        alg: SigningAlg,
    },
    /// Pre-published rotation: a new key is published now and signs after
    /// the pre-publication period; the current key retires then and stays
    /// published while tokens it signed live.
    Rotate {
        #[arg(long, default_value = "RS256")]
        alg: SigningAlg,
        /// Seconds before the new key signs. Default `TESSERA_KEY_PREPUBLISH`;
        /// 0 (emergency) risks resource servers with a cached JWKS refusing
        /// new tokens until their cache expires.
        #[arg(long)]
        prepublish: Option<u64>,
    },
    /// Stop a key signing now. It stays in the JWKS until every token it
    /// signed has expired, unless `--unpublish` (for a compromised key).
    Retire {
        kid: String,
        /// Delete the key at once: tokens it signed stop verifying.
        #[arg(long)]
        unpublish: bool,
    },
    /// List keys: kid, algorithm, state (pending, active, published,
    /// retired, expired) and when it changes.
    List,
}

/// Upper bound on tokio's blocking threads (see `run`).
const MAX_BLOCKING_THREADS: usize = 16;

/// Parses the command line, runs it and maps failures to an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tessera: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    // Blocking threads do bcrypt (at most one per core) and embedded-store
    // writes (one at a time behind the writer's lock), so a few are enough;
    // tokio's default of 512 let a refresh load park 100 threads, each with
    // its own allocator heap, on that lock.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tessera: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Keys(command) => keys(config, command).await,
            Command::Users(command) => admin::users(config, command).await,
            Command::Clients(command) => admin::clients(config, command).await,
            Command::Events(args) => admin::events(config, args).await,
            Command::Healthcheck { url } => healthcheck(&config, url).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(config: Config) -> Result<(), StartError> {
    let addr = config.listen;
    let app = App::build(config, Clock::system()).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    tracing::info!(
        addr = %listener.local_addr().unwrap_or(addr),
        issuer = %app.state.config.issuer,
        users = app.state.user_store.backend_name(),
        tokens = app.state.token_store.backend_name(),
        "tessera is ready"
    );
    app.serve(listener, crate::shutdown_signal())
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    tracing::info!("stopped");
    Ok(())
}

/// Records a key event in the configured user store (`keys rotate` and
/// `retire` run beside a server, or on their own: the event is best effort).
async fn record_key_event(config: &Config, event: Event) {
    match Stores::open(config).await {
        Ok(stores) => {
            let audit = Audit::new(stores.users, Clock::system());
            audit.record(Actor::Cli.stamp(event)).await;
        }
        Err(e) => eprintln!("tessera: warning: the audit event was not written: {e}"),
    }
}

async fn keys(config: Config, command: KeysCommand) -> Result<(), StartError> {
    let dir = KeyDir::new(&config.keys_dir);
    let now = Clock::system().now();
    match command {
        KeysCommand::Generate { alg } => {
            let meta = dir.generate(alg, now, now)?;
            println!(
                "{}\t{}\tgenerated in {}",
                meta.kid,
                meta.alg.as_str(),
                config.keys_dir.display()
            );
        }
        KeysCommand::Rotate { alg, prepublish } => {
            let prepublish = prepublish.unwrap_or(config.key_prepublish);
            let safe = config.min_key_prepublish();
            if prepublish < safe {
                eprintln!(
                    "tessera: warning: pre-publishing for {prepublish} s, less than the JWKS \
                     max-age plus reload interval ({safe} s): cached JWKS may lack the new key"
                );
            }
            let meta = dir.rotate(alg, now, prepublish)?;
            let event = Event::new(EventType::KeyRotated).detail(serde_json::json!({
                "kid": meta.kid, "alg": meta.alg.as_str(), "activate_at": meta.activate_at,
            }));
            record_key_event(&config, event).await;
            println!(
                "{}\t{}\tpublished now, signs from {}",
                meta.kid,
                meta.alg.as_str(),
                rfc3339(meta.activate_at)
            );
        }
        KeysCommand::Retire { kid, unpublish } => {
            let meta = dir.retire(&kid, now, unpublish)?;
            let event = Event::new(EventType::KeyRetired).detail(serde_json::json!({
                "kid": meta.kid, "alg": meta.alg.as_str(), "unpublished": unpublish,
            }));
            record_key_event(&config, event).await;
            let until = if unpublish {
                "unpublished now".to_owned()
            } else {
                format!(
                    "published until {}",
                    rfc3339(now + config.retired_key_window() as i64)
                )
            };
            println!("{}\t{}\tretired, {until}", meta.kid, meta.alg.as_str());
        }
        KeysCommand::List => {
            let window = config.retired_key_window();
            let active = match KeySet::new(dir.load()?, now, window) {
                Ok(set) => Some(set),
                Err(KeyError::NoActiveKey) => None,
                // The list is still shown; the server would refuse to start.
                Err(e) => {
                    eprintln!("tessera: warning: {e}");
                    None
                }
            };
            let active_kid = active.as_ref().map(|set| set.active().kid());
            for meta in dir.list()? {
                let state = meta.state(now, window, active_kid);
                let when = match state {
                    "pending" => format!("signs from {}", rfc3339(meta.activate_at)),
                    "active" | "published" => match meta.retired_at {
                        Some(at) => format!("retires at {}", rfc3339(at)),
                        None => String::new(),
                    },
                    _ => meta
                        .retired_at
                        .map(|at| format!("published until {}", rfc3339(at + window as i64)))
                        .unwrap_or_default(),
                };
                println!("{}\t{}\t{state}\t{when}", meta.kid, meta.alg.as_str());
            }
        }
    }
    Ok(())
}

fn rfc3339(at: crate::clock::UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

async fn healthcheck(config: &Config, url: Option<String>) -> Result<(), StartError> {
    let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{}/readyz", config.listen.port()));
    let not_ready = StartError::NotReady;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .map_err(|e| not_ready(e.to_string()))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| not_ready(e.to_string()))?;
    if response.status().is_success() {
        println!("ready");
        Ok(())
    } else {
        Err(not_ready(response.status().to_string()))
    }
}
