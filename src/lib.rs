//! Tessera: an OAuth 2.0 authorization server and user-management service.
//!
//! A request flows one way: [`http`] parses and authenticates, calls one
//! [`domain`] function, which talks to [`store`] traits and [`crypto`].

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod files;
pub mod http;
pub mod mail;
pub mod observability;
pub mod problem;
pub mod resource;
pub mod store;
pub mod templates;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::jwt::AccessClaims;
use crate::crypto::keys::{KeyDir, KeyRing};
use crate::crypto::password::PasswordHasher;
use crate::domain::account::AccountService;
use crate::domain::admin::AdminService;
use crate::domain::audit::Audit;
use crate::domain::authorize::Authorizer;
use crate::domain::clients::ClientService;
use crate::domain::grants::Grants;
use crate::domain::otp::{OtpLimits, OtpService};
use crate::domain::throttle::Throttle;
use crate::domain::tokens::TokenService;
use crate::domain::users::UserService;
use crate::http::{AppState, Services};
use crate::mail::{Mailer, Outbox};
use crate::resource::{AccessTokenVerifier, LocalKeys, RevocationCheck, VerifyError};
use crate::store::mongo::MongoStore;
use crate::store::redis::{RedisStore, RedisTopology};
use crate::store::sqlite::SqliteStore;
use crate::store::{AccessCheck, Directory, TokenStore};
use crate::templates::Templates;

/// A built application: the router and the state behind it.
pub struct App {
    pub state: AppState,
}

/// Start-up failures (and failures of the CLI's commands), each saying
/// what failed with a message an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("signing keys: {0}")]
    Keys(#[from] crypto::keys::KeyError),
    /// The embedded SQLite store in the data dir cannot be opened.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// The data dir could not be created or made private.
    #[error("TESSERA_DATA_DIR: cannot create {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configured user store (MongoDB) cannot be used.
    #[error("TESSERA_MONGODB_URI: cannot use the server: {0}")]
    UserStore(store::StoreError),
    /// The configured token store (Redis) cannot be reached.
    #[error("TESSERA_REDIS_URL: cannot connect: {0}")]
    TokenStore(store::StoreError),
    /// A built-in template does not compile (a bug in the build).
    #[error(transparent)]
    Templates(#[from] templates::TemplateError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `tessera users set-role` failed.
    #[error("set-role failed: {0}")]
    SetRole(domain::DomainError),
    /// `TESSERA_BOOTSTRAP_ADMIN_EMAIL` could not be applied.
    #[error("TESSERA_BOOTSTRAP_ADMIN_EMAIL: {0}")]
    Bootstrap(domain::DomainError),
    /// A `tessera users` command failed.
    #[error("users: {0}")]
    Users(String),
    /// A `tessera events` command failed.
    #[error("events: {0}")]
    Events(String),
    /// `tessera healthcheck`: the server is not ready (or not reachable).
    #[error("not ready: {0}")]
    NotReady(String),
    /// A `tessera clients` command failed.
    #[error("clients: {0}")]
    Clients(String),
}

/// The stores the configuration selects.
pub struct Stores {
    /// Users and clients.
    pub users: Arc<dyn Directory>,
    pub tokens: Arc<dyn TokenStore>,
}

impl Stores {
    /// The embedded SQLite store unless MongoDB/Redis are configured.
    pub async fn open(config: &Config) -> Result<Self, StartError> {
        files::create_private_dir(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let sqlite = Arc::new(SqliteStore::open(&config.data_dir)?);
        for file in ["tessera.db", "tessera.db-wal", "tessera.db-shm"] {
            let path = config.data_dir.join(file);
            if path.exists()
                && let Err(e) = files::restrict_file(&path)
            {
                tracing::warn!(file = %path.display(), error = %e, "cannot make the database file private (mode 0600)");
            }
        }
        let users: Arc<dyn Directory> = match &config.mongodb_uri {
            Some(uri) => Arc::new(
                MongoStore::connect(uri.expose(), &config.mongodb_db)
                    .await
                    .map_err(StartError::UserStore)?,
            ),
            None => sqlite.clone(),
        };
        let tokens: Arc<dyn TokenStore> = match &config.redis_url {
            Some(url) => {
                // A moved credential epoch must outlive everything of the
                // epochs before it: families (absolute lifetime) and the
                // access tokens minted from them (up to a day, plus leeway).
                let epoch_ttl = config.refresh_absolute_ttl + config.retired_key_window() + 60;
                Arc::new(
                    RedisStore::connect(
                        &RedisTopology::parse(url.expose(), config.redis_cluster),
                        epoch_ttl,
                    )
                    .await
                    .map_err(StartError::TokenStore)?,
                )
            }
            None => sqlite.clone(),
        };
        Ok(Self { users, tokens })
    }
}

/// The token store as the resource layer's revocation check.
pub struct StoreRevocation(pub Arc<dyn TokenStore>);

#[async_trait]
impl RevocationCheck for StoreRevocation {
    async fn is_revoked(&self, _token: &str, claims: &AccessClaims) -> Result<bool, VerifyError> {
        let check = AccessCheck {
            jti: &claims.jti,
            sub: &claims.sub,
            family: claims.family(),
            epoch: claims.epoch(),
        };
        self.0.is_access_revoked(&check).await.map_err(|e| {
            tracing::warn!(error = %e, "revocation check failed");
            VerifyError::Unavailable
        })
    }
}

impl App {
    /// Opens the stores and keys the configuration names and wires the services.
    pub async fn build(config: Config, clock: Clock) -> Result<Self, StartError> {
        config.validate()?;
        observability::prometheus();
        let trusted_proxies = Arc::new(config.trusted_proxy_nets()?);
        let stores = Stores::open(&config).await?;
        let key_dir = KeyDir::new(&config.keys_dir);
        let keys = load_keys(key_dir.clone(), &config, &clock)?;
        let token_secret = match &config.token_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => key_dir.token_secret()?,
        };
        let hasher = PasswordHasher::new(config.bcrypt_cost, config.bcrypt_queue);
        hasher.warm_up();
        let templates = Arc::new(Templates::load()?);
        let mailer = Arc::new(Mailer::from_config(&config, templates.clone())?);
        let cookie_key = cookie_key(&token_secret);
        let outbox: Arc<dyn Outbox> = Arc::new(mailer.clone());
        let audit = Arc::new(Audit::new(stores.users.clone(), clock.clone()));
        let tokens = Arc::new(TokenService::new(
            &config,
            keys.clone(),
            stores.tokens.clone(),
            clock.clone(),
            derived_key(&token_secret, b"tessera refresh successor").to_vec(),
            audit.clone(),
        ));
        let users = Arc::new(UserService::new(
            stores.users.clone(),
            tokens.clone(),
            hasher.clone(),
            outbox.clone(),
            Throttle::new(stores.tokens.clone(), clock.clone()),
            clock.clone(),
            audit.clone(),
            config.signups_per_address,
        ));
        let otp = Arc::new(OtpService::new(
            stores.users.clone(),
            stores.tokens.clone(),
            tokens.clone(),
            hasher,
            outbox,
            clock.clone(),
            derived_key(&token_secret, b"tessera one-time code").to_vec(),
            OtpLimits::default(),
            audit.clone(),
        ));
        let clients = Arc::new(ClientService::new(
            stores.users.clone(),
            stores.tokens.clone(),
            clock.clone(),
            Throttle::new(stores.tokens.clone(), clock.clone()),
            audit.clone(),
        ));
        let account = Arc::new(AccountService::new(
            stores.users.clone(),
            users.clone(),
            tokens.clone(),
            stores.tokens.clone(),
            clients.clone(),
            otp.clone(),
            audit.clone(),
            clock.clone(),
        ));
        let admin = Arc::new(AdminService::new(
            stores.users.clone(),
            tokens.clone(),
            audit.clone(),
            clock.clone(),
        ));
        if let Some(email) = config.bootstrap_admin() {
            admin
                .bootstrap_admin(email)
                .await
                .map_err(StartError::Bootstrap)?;
        }
        let grants = Arc::new(Grants::new(
            tokens.clone(),
            stores.users.clone(),
            stores.tokens.clone(),
        ));
        let dpop = Arc::new(crate::domain::dpop::DpopService::new(
            stores.tokens.clone(),
            clock.clone(),
            &config.issuer,
            config.dpop_proof_max_age,
            config
                .dpop_nonce
                .then(|| derived_key(&token_secret, b"tessera dpop nonce")),
            config.dpop_required_for_public_clients,
        ));
        let authorizer = Arc::new(
            Authorizer::new(
                clients.clone(),
                grants.clone(),
                stores.tokens.clone(),
                clock.clone(),
                audit.clone(),
            )
            .require_par(config.require_par),
        );
        let logout = Arc::new(crate::domain::oidc::Logout::new(
            tokens.clone(),
            stores.tokens.clone(),
            clients.clone(),
            audit.clone(),
        ));
        let verifier = AccessTokenVerifier::new(
            Arc::new(LocalKeys::new(keys.clone())),
            &config.issuer,
            config.audience(),
        )
        .leeway(config.clock_leeway)
        .clock(clock.clone())
        .revocation(Arc::new(StoreRevocation(stores.tokens.clone())))
        // DPoP at `/api` and `/userinfo`: `htu` is the issuer's URL of the
        // route, and proofs are remembered in the token store.
        .dpop_base_url(&config.issuer)
        .dpop_max_age(config.dpop_proof_max_age)
        .dpop_replay(Arc::new(crate::resource::StoreReplay::new(
            stores.tokens.clone(),
            clock.clone(),
        )));
        Ok(Self {
            state: AppState::new(Services {
                config: Arc::new(config),
                clock,
                keys,
                users,
                admin,
                audit,
                authorizer,
                templates,
                cookie_key,
                trusted_proxies,
                otp,
                account,
                mailer,
                clients,
                grants,
                dpop,
                logout,
                tokens,
                verifier: Arc::new(verifier),
                user_store: stores.users,
                token_store: stores.tokens,
            }),
        })
    }

    /// The router to serve.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight
    /// requests finish.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let purge = tokio::spawn(purge_periodically(
            self.state.token_store.clone(),
            self.state.clock.clone(),
        ));
        let reload = tokio::spawn(reload_keys_periodically(
            self.state.keys.clone(),
            self.state.clock.clone(),
            std::time::Duration::from_secs(self.state.config.keys_reload_interval),
        ));
        let upkeep = tokio::spawn(observability::upkeep_periodically());
        let prune = tokio::spawn(prune_events_periodically(
            self.state.audit.clone(),
            self.state.config.events_retention,
        ));
        let result = self.serve_until(listener, shutdown).await;
        prune.abort();
        purge.abort();
        reload.abort();
        upkeep.abort();
        result
    }

    async fn serve_until(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = http::server::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(
                self.state.config.header_read_timeout,
            ),
            max_connections: self.state.config.max_connections,
        };
        http::server::serve(listener, self.router(), limits, shutdown).await
    }
}

/// A key for one purpose, derived from the token secret, so that no two
/// uses (refresh successors, one-time-code digests, cookies) share a key.
fn derived_key(token_secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    crate::crypto::secret::hmac_sha256(token_secret, purpose)
}

/// 64 bytes (encryption and signing) for the `/authorize` cookies, derived
/// from the token secret so every node that shares it reads the cookies.
fn cookie_key(token_secret: &[u8]) -> axum_extra::extract::cookie::Key {
    use crate::crypto::secret::hmac_sha256;
    let mut material = [0u8; 64];
    material[..32].copy_from_slice(&hmac_sha256(token_secret, b"tessera cookie key 1"));
    material[32..].copy_from_slice(&hmac_sha256(token_secret, b"tessera cookie key 2"));
    axum_extra::extract::cookie::Key::from(&material)
}

fn load_keys(dir: KeyDir, config: &Config, clock: &Clock) -> Result<Arc<KeyRing>, StartError> {
    let (keys, generated) = KeyRing::load_or_init(
        dir,
        config.signing_alg,
        clock.now(),
        config.retired_key_window(),
    )?;
    if let Some(meta) = generated {
        tracing::info!(
            kid = %meta.kid,
            alg = meta.alg.as_str(),
            dir = %config.keys_dir.display(),
            "no signing key found: generated one"
        );
    }
    Ok(Arc::new(keys))
}

/// Drops expired token state every ten minutes (backends with TTLs do nothing).
async fn purge_periodically(store: Arc<dyn TokenStore>, clock: Clock) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        if let Err(e) = store.purge_expired(clock.now()).await {
            tracing::warn!(error = %e, "purging expired token state failed");
        }
    }
}

/// Deletes audit events older than `TESSERA_EVENTS_RETENTION` days, once an
/// hour (every node does; deleting what another node deleted is a no-op).
async fn prune_events_periodically(audit: Arc<Audit>, retention_days: u64) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        match audit.prune(retention_days).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "old audit events pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning old audit events failed"),
        }
    }
}

/// Picks up keys rotated or retired by any node sharing the keys dir, and
/// pending keys whose time has come.
async fn reload_keys_periodically(keys: Arc<KeyRing>, clock: Clock, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (ring, now) = (keys.clone(), clock.now());
        match tokio::task::spawn_blocking(move || ring.reload(now)).await {
            Ok(Ok(Some(kid))) => tracing::info!(%kid, "signing with a new key"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reloading the keys dir failed; keeping the loaded keys")
            }
            // The blocking task panicked or was cancelled: not a key problem.
            Err(e) => tracing::error!(
                error = %e,
                "the key reload task did not finish; keeping the loaded keys"
            ),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
