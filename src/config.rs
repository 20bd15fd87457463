//! One `Config` struct, loaded from `tessera.toml` (optional) then `TESSERA_*`
//! environment variables, validated once at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// A configuration value that must never reach a log: `Debug` prints `***`.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that hands it to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Signature algorithms Tessera can sign access tokens with.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }
}

impl std::str::FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(SigningAlg::RS256),
            "ES256" => Ok(SigningAlg::ES256),
            "EdDSA" => Ok(SigningAlg::EdDSA),
            other => Err(format!(
                "unsupported algorithm {other:?} (use RS256, ES256 or EdDSA)"
            )),
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// SMTP transport security.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    Starttls,
    Tls,
}

/// Every setting of Tessera. Each field is `TESSERA_<FIELD>` in the
/// environment and `<field>` in `tessera.toml`; the environment wins.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `TESSERA_LISTEN`: address to listen on. Default `0.0.0.0:3000`.
    pub listen: SocketAddr,
    /// `TESSERA_ISSUER`: issuer URL, also the default audience. Default `http://localhost:3000`.
    pub issuer: String,
    /// `TESSERA_AUDIENCE`: `aud` of access tokens. Default: the issuer.
    pub audience: Option<String>,
    /// `TESSERA_DATA_DIR`: embedded store and mail folder. Default `./data`.
    pub data_dir: PathBuf,
    /// `TESSERA_KEYS_DIR`: signing keys. Default `./keys`.
    pub keys_dir: PathBuf,
    /// `TESSERA_SIGNING_ALG`: algorithm of the key generated on first start. Default `RS256`.
    pub signing_alg: SigningAlg,
    /// `TESSERA_MONGODB_URI`: MongoDB user store; unset means the embedded store.
    pub mongodb_uri: Option<Secret>,
    /// `TESSERA_MONGODB_DB`: MongoDB database name. Default `tessera`.
    pub mongodb_db: String,
    /// `TESSERA_REDIS_URL`: Redis token store; unset means the embedded store.
    /// Several comma-separated URLs are the seed nodes of a Redis Cluster.
    pub redis_url: Option<Secret>,
    /// `TESSERA_REDIS_CLUSTER`: treat a single `TESSERA_REDIS_URL` as a
    /// cluster seed node. Default false.
    pub redis_cluster: bool,
    /// `TESSERA_SMTP_HOST`: SMTP relay; unset means `.eml` files under the data dir.
    pub smtp_host: Option<String>,
    /// `TESSERA_SMTP_PORT`. Default 587.
    pub smtp_port: u16,
    /// `TESSERA_SMTP_SECURITY`: `none`, `starttls` or `tls`. Default `starttls`.
    pub smtp_security: SmtpSecurity,
    /// `TESSERA_SMTP_USERNAME`.
    pub smtp_username: Option<String>,
    /// `TESSERA_SMTP_PASSWORD`.
    pub smtp_password: Option<Secret>,
    /// `TESSERA_MAIL_FROM`. Default `Tessera <no-reply@localhost>`.
    pub mail_from: String,
    /// `TESSERA_BCRYPT_COST`: 4..=31. Default 12.
    pub bcrypt_cost: u32,
    /// `TESSERA_ACCESS_TOKEN_TTL`: seconds. Default 900.
    pub access_token_ttl: u64,
    /// `TESSERA_ID_TOKEN_TTL`: seconds an OpenID Connect ID token lives. Default 3600.
    pub id_token_ttl: u64,
    /// `TESSERA_REFRESH_IDLE_TTL`: seconds. Default 1,209,600 (14 days).
    pub refresh_idle_ttl: u64,
    /// `TESSERA_REFRESH_ABSOLUTE_TTL`: seconds. Default 2,592,000 (30 days).
    pub refresh_absolute_ttl: u64,
    /// `TESSERA_REFRESH_REUSE_GRACE`: seconds. Default 0.
    pub refresh_reuse_grace: u64,
    /// `TESSERA_CLOCK_LEEWAY`: seconds of leeway on `exp`/`nbf`. Default 30.
    pub clock_leeway: u64,
    /// `TESSERA_KEYS_RELOAD_INTERVAL`: seconds between re-reads of the keys
    /// dir, so a rotation made on any node reaches every node. Default 10.
    pub keys_reload_interval: u64,
    /// `TESSERA_KEY_PREPUBLISH`: seconds a rotated-in key is published in the
    /// JWKS before it signs. At least `TESSERA_JWKS_MAX_AGE` plus the reload
    /// interval, so no cache holds a JWKS without it. Default 900.
    pub key_prepublish: u64,
    /// `TESSERA_JWKS_MAX_AGE`: `Cache-Control: max-age` of the JWKS and
    /// metadata, in seconds. Default 300.
    pub jwks_max_age: u64,
    /// `TESSERA_TOKEN_SECRET`: key for HMACs over tokens (successor derivation, OTPs).
    /// Default: generated once and kept in the keys dir.
    pub token_secret: Option<Secret>,
    /// `TESSERA_CORS_ORIGINS`: comma-separated origins allowed to call the
    /// API from browsers. Default: none.
    pub cors_origins: Option<String>,
    /// `TESSERA_TRUSTED_PROXIES`: comma-separated IPs or CIDRs whose
    /// `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: Option<String>,
    /// `TESSERA_HEADER_READ_TIMEOUT`: seconds a client has to send a request's
    /// headers before the connection is closed (slow-loris defence). Default 10.
    pub header_read_timeout: u64,
    /// `TESSERA_REQUEST_TIMEOUT`: seconds a request (body included) may take
    /// before it is answered 408. Default 30.
    pub request_timeout: u64,
    /// `TESSERA_MAX_CONNECTIONS`: open connections served at once; further
    /// ones wait in the kernel's accept queue. Default: unlimited.
    pub max_connections: Option<usize>,
    /// `TESSERA_BCRYPT_QUEUE`: password hashes that may wait for a core
    /// beyond those running; past it the answer is 503 with `Retry-After`.
    /// Default 64.
    pub bcrypt_queue: usize,
    /// `TESSERA_SIGNUPS_PER_ADDRESS`: signups per client address (IPv6: per
    /// /64) per hour. Default 20.
    pub signups_per_address: u64,
    /// `TESSERA_EVENTS_RETENTION`: days audit events are kept before a
    /// background task prunes them. Default 90.
    pub events_retention: u64,
    /// `TESSERA_BOOTSTRAP_ADMIN_EMAIL`: at start, if this user exists and no
    /// admin does, they become admin (recorded as an audit event). Default: unset.
    pub bootstrap_admin_email: Option<String>,
    /// `TESSERA_DPOP_NONCE`: DPoP proofs at the token endpoint and the user
    /// login must carry a server nonce (RFC 9449 §8; a proof without one is
    /// answered `use_dpop_nonce` with a `DPoP-Nonce`). Default false.
    pub dpop_nonce: bool,
    /// `TESSERA_DPOP_REQUIRED_FOR_PUBLIC_CLIENTS`: every token request of a
    /// public client must carry a DPoP proof (RFC 9700 §2.2.2: sender-
    /// constrained refresh tokens). Default false.
    pub dpop_required_for_public_clients: bool,
    /// `TESSERA_DPOP_PROOF_MAX_AGE`: seconds a DPoP proof is accepted after
    /// its `iat` (and its `jti` remembered). Default 60.
    pub dpop_proof_max_age: u64,
    /// `TESSERA_REQUIRE_PAR`: every client must push its authorization
    /// requests to `/par` first (RFC 9126 §5). Default false (a client can
    /// still be required to, by its registration).
    pub require_par: bool,
    /// `TESSERA_LOG`: tracing filter. Default `info`.
    pub log: String,
    /// `TESSERA_LOG_FORMAT`: `text` or `json`. Default `text`.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            issuer: "http://localhost:3000".into(),
            audience: None,
            data_dir: PathBuf::from("./data"),
            keys_dir: PathBuf::from("./keys"),
            signing_alg: SigningAlg::RS256,
            mongodb_uri: None,
            mongodb_db: "tessera".into(),
            redis_url: None,
            redis_cluster: false,
            smtp_host: None,
            smtp_port: 587,
            smtp_security: SmtpSecurity::Starttls,
            smtp_username: None,
            smtp_password: None,
            mail_from: "Tessera <no-reply@localhost>".into(),
            bcrypt_cost: 12,
            access_token_ttl: 900,
            id_token_ttl: 3600,
            refresh_idle_ttl: 14 * 24 * 3600,
            refresh_absolute_ttl: 30 * 24 * 3600,
            refresh_reuse_grace: 0,
            clock_leeway: 30,
            keys_reload_interval: 10,
            key_prepublish: 900,
            jwks_max_age: 300,
            token_secret: None,
            cors_origins: None,
            trusted_proxies: None,
            header_read_timeout: 10,
            request_timeout: 30,
            max_connections: None,
            bcrypt_queue: 64,
            signups_per_address: 20,
            events_retention: 90,
            bootstrap_admin_email: None,
            dpop_nonce: false,
            dpop_required_for_public_clients: false,
            dpop_proof_max_age: 60,
            require_par: false,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

/// The longest an access token may live, whatever the client's setting.
pub const MAX_ACCESS_TOKEN_TTL: u64 = 24 * 3600;

/// SMTP credentials are a pair: a username without a password (or the
/// reverse) would try an empty password at every send.
pub const SMTP_CREDENTIALS: &str =
    "TESSERA_SMTP_USERNAME and TESSERA_SMTP_PASSWORD: set both or neither";

/// A setting that is missing, malformed or out of range; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Defaults, then `file` (or `./tessera.toml` if it exists), then `TESSERA_*`.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file("tessera.toml")),
        }
        let config: Config = figment
            .merge(Env::prefixed("TESSERA_").ignore(&["config_file"]))
            .extract()
            .map_err(|e| ConfigError(describe_figment_error(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// A valid configuration for tests: cheap bcrypt, everything under `dir`.
    pub fn for_test(dir: &Path) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.join("data"),
            keys_dir: dir.join("keys"),
            bcrypt_cost: 4,
            // The suite signs up hundreds of users from 127.0.0.1.
            signups_per_address: 1_000_000,
            ..Config::default()
        }
    }

    /// The shortest safe pre-publication of a rotated-in key: a resource
    /// server's cached JWKS and every node's loaded keys include it by then.
    pub fn min_key_prepublish(&self) -> u64 {
        self.jwks_max_age + self.keys_reload_interval
    }

    /// `TESSERA_BOOTSTRAP_ADMIN_EMAIL` when set to something (compose files
    /// pass an empty value for "unset").
    pub fn bootstrap_admin(&self) -> Option<&str> {
        self.bootstrap_admin_email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }

    /// How long a retired signing key stays in the JWKS: as long as the
    /// longest-lived token it may have signed, plus the verifiers' leeway.
    pub fn retired_key_window(&self) -> u64 {
        MAX_ACCESS_TOKEN_TTL + self.clock_leeway
    }

    /// The `aud` every access token carries and the resource layer expects.
    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.issuer)
    }

    /// The parsed `TESSERA_TRUSTED_PROXIES`.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        let Some(raw) = &self.trusted_proxies else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .ok()
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                ConfigError(
                    "TESSERA_TRUSTED_PROXIES: must be comma-separated IP addresses or CIDR ranges"
                        .into(),
                )
            })
    }

    /// The parsed `TESSERA_CORS_ORIGINS`.
    pub fn cors_origin_list(&self) -> Result<Vec<String>, ConfigError> {
        let Some(raw) = &self.cors_origins else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let url = url::Url::parse(s).ok()?;
                let origin = url.origin().ascii_serialization();
                (matches!(url.scheme(), "http" | "https") && origin == s.trim_end_matches('/'))
                    .then_some(origin)
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                ConfigError(
                    "TESSERA_CORS_ORIGINS: must be comma-separated origins such as \
                     https://app.example"
                        .into(),
                )
            })
    }

    /// Checks ranges and formats once, so the rest of the code can trust them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, why: &str| Err(ConfigError(format!("TESSERA_{name}: {why}")));
        match url::Url::parse(&self.issuer) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.query().is_none()
                    && u.fragment().is_none() => {}
            _ => return bad("ISSUER", "must be an http(s) URL without query or fragment"),
        }
        if self.issuer.ends_with('/') {
            return bad("ISSUER", "must not end with a slash");
        }
        if !(4..=31).contains(&self.bcrypt_cost) {
            return bad("BCRYPT_COST", "must be between 4 and 31");
        }
        if self.access_token_ttl == 0 || self.access_token_ttl > MAX_ACCESS_TOKEN_TTL {
            return bad("ACCESS_TOKEN_TTL", "must be between 1 and 86400 seconds");
        }
        if self.id_token_ttl == 0 || self.id_token_ttl > MAX_ACCESS_TOKEN_TTL {
            return bad("ID_TOKEN_TTL", "must be between 1 and 86400 seconds");
        }
        if self.refresh_idle_ttl == 0 {
            return bad("REFRESH_IDLE_TTL", "must be positive");
        }
        if self.refresh_idle_ttl < self.access_token_ttl {
            return bad(
                "REFRESH_IDLE_TTL",
                "must be at least TESSERA_ACCESS_TOKEN_TTL",
            );
        }
        if self.refresh_absolute_ttl < self.refresh_idle_ttl {
            return bad(
                "REFRESH_ABSOLUTE_TTL",
                "must be at least TESSERA_REFRESH_IDLE_TTL",
            );
        }
        if self.refresh_reuse_grace > 300 {
            return bad("REFRESH_REUSE_GRACE", "must be at most 300 seconds");
        }
        if self.clock_leeway > 300 {
            return bad("CLOCK_LEEWAY", "must be at most 300 seconds");
        }
        if !(5..=600).contains(&self.dpop_proof_max_age) {
            return bad("DPOP_PROOF_MAX_AGE", "must be between 5 and 600 seconds");
        }
        if !(1..=3650).contains(&self.events_retention) {
            return bad("EVENTS_RETENTION", "must be between 1 and 3650 days");
        }
        if let Some(email) = self.bootstrap_admin()
            && (email.len() > 254 || !email.contains('@'))
        {
            return bad("BOOTSTRAP_ADMIN_EMAIL", "must be an email address");
        }
        if self.mongodb_db.is_empty() {
            return bad("MONGODB_DB", "must not be empty");
        }
        if let Some(secret) = &self.token_secret
            && secret.expose().len() < 32
        {
            return bad("TOKEN_SECRET", "must be at least 32 characters");
        }
        if let Some(urls) = &self.redis_url
            && !urls
                .expose()
                .split(',')
                .map(str::trim)
                .all(|url| url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return bad(
                "REDIS_URL",
                "must be redis:// or rediss:// URLs, comma-separated for a cluster",
            );
        }
        if self.keys_reload_interval == 0 || self.keys_reload_interval > 3600 {
            return bad("KEYS_RELOAD_INTERVAL", "must be between 1 and 3600 seconds");
        }
        if self.jwks_max_age > 24 * 3600 {
            return bad("JWKS_MAX_AGE", "must be at most 86400 seconds");
        }
        if self.key_prepublish < self.min_key_prepublish() {
            return bad(
                "KEY_PREPUBLISH",
                "must be at least TESSERA_JWKS_MAX_AGE + TESSERA_KEYS_RELOAD_INTERVAL, \
                 or resource servers may see a kid their cached JWKS lacks",
            );
        }
        if let Some(uri) = &self.mongodb_uri
            && !(uri.expose().starts_with("mongodb://")
                || uri.expose().starts_with("mongodb+srv://"))
        {
            return bad(
                "MONGODB_URI",
                "must start with mongodb:// or mongodb+srv://",
            );
        }
        self.trusted_proxy_nets()?;
        self.cors_origin_list()?;
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return bad(
                "MAIL_FROM",
                "must be a mailbox such as `Tessera <no-reply@example.com>`",
            );
        }
        if self.smtp_host.as_deref().is_some_and(str::is_empty) {
            return bad(
                "SMTP_HOST",
                "must not be empty (unset it for the .eml folder)",
            );
        }
        if self.smtp_username.is_some() != self.smtp_password.is_some() {
            return Err(ConfigError(SMTP_CREDENTIALS.into()));
        }
        if !(1..=300).contains(&self.header_read_timeout) {
            return bad("HEADER_READ_TIMEOUT", "must be between 1 and 300 seconds");
        }
        if !(1..=3600).contains(&self.request_timeout) {
            return bad("REQUEST_TIMEOUT", "must be between 1 and 3600 seconds");
        }
        if self.max_connections == Some(0) {
            return bad("MAX_CONNECTIONS", "must be positive (unset it for no cap)");
        }
        if self.signups_per_address == 0 {
            return bad("SIGNUPS_PER_ADDRESS", "must be positive");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|_| ConfigError("TESSERA_LOG: not a valid tracing filter".into()))?;
        Ok(())
    }
}

/// Figment's messages name the key in lower case; say the variable instead.
fn describe_figment_error(error: figment::Error) -> String {
    let mut lines = Vec::new();
    for e in error {
        let key = e.path.join(".");
        let setting = if key.is_empty() {
            String::new()
        } else {
            format!("TESSERA_{}: ", key.to_uppercase())
        };
        let kind = match &e.kind {
            figment::error::Kind::UnknownField(name, _) => {
                format!("TESSERA_{}: unknown setting", name.to_uppercase())
            }
            kind => format!("{setting}{kind}"),
        };
        lines.push(kind);
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
        assert_eq!(Config::default().audience(), "http://localhost:3000");
    }

    #[test]
    fn errors_name_the_setting() {
        let config = Config {
            bcrypt_cost: 40,
            ..Config::default()
        };
        let err = config.validate().expect_err("cost 40 is refused");
        assert!(err.to_string().contains("TESSERA_BCRYPT_COST"));
    }

    #[test]
    fn malformed_lists_and_half_credentials_are_refused_with_their_names() {
        let proxies = Config {
            trusted_proxies: Some("10.0.0.0/8, not-an-ip".into()),
            ..Config::default()
        };
        let err = proxies.validate().expect_err("bad proxy list");
        assert!(err.to_string().contains("TESSERA_TRUSTED_PROXIES"), "{err}");
        let cors = Config {
            cors_origins: Some("https://app.example/path".into()),
            ..Config::default()
        };
        let err = cors.validate().expect_err("bad origin");
        assert!(
            err.to_string().contains(
                "TESSERA_CORS_ORIGINS: must be comma-separated origins such as https://app.example"
            ),
            "{err}"
        );
        let smtp = Config {
            smtp_username: Some("mailer".into()),
            ..Config::default()
        };
        let err = smtp.validate().expect_err("username without password");
        assert!(err.to_string().contains("TESSERA_SMTP_PASSWORD"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }
}
