//! The `tessera` command line: `serve` (default), `keys`, `users`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::clock::Clock;
use crate::config::{Config, LogFormat, SigningAlg};
use crate::crypto::keys::KeyDir;
use crate::{App, StartError};

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
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key; it signs from now on (the newest active key signs).
    Generate {
        #[arg(long, default_value = "RS256")]
        alg: SigningAlg,
    },
    /// List keys: kid, algorithm, state.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Give a user a role, e.g. `tessera users set-role alice@example.com admin`.
    SetRole { email: String, role: String },
}

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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
            Command::Keys(command) => keys(config, command),
            Command::Users(command) => users(config, command).await,
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

fn keys(config: Config, command: KeysCommand) -> Result<(), StartError> {
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
        KeysCommand::List => {
            let metas = dir.list()?;
            let active = crate::crypto::keys::KeySet::new(dir.load()?, now).ok();
            for meta in metas {
                let state = match (&active, meta.retired_at) {
                    (_, Some(_)) => "retired",
                    (Some(set), None) if set.active().kid() == meta.kid => "active",
                    _ if meta.activate_at > now => "pending",
                    _ => "published",
                };
                println!("{}\t{}\t{}", meta.kid, meta.alg.as_str(), state);
            }
        }
    }
    Ok(())
}

async fn users(config: Config, command: UsersCommand) -> Result<(), StartError> {
    match command {
        UsersCommand::SetRole { email, role } => {
            let app = App::build(config, Clock::system()).await?;
            app.state
                .users
                .set_role(&email, &role)
                .await
                .map_err(|e| StartError::Unsupported(format!("set-role failed: {e}")))?;
            println!("{email}: role set to {role}");
        }
    }
    Ok(())
}
