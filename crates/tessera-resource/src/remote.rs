//! The issuer over HTTP: its JWKS and its `/introspect`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::jwk::{KeyMap, decoding_keys};
use crate::{AccessClaims, KeySource, RevocationCheck, VerifyError};

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "HTTP client: cannot set the timeout; using reqwest's defaults");
            reqwest::Client::new()
        })
}

/// A JWKS fetched over HTTP and cached for the `max-age` the server sends
/// (so keys pre-published by a rotation arrive before they sign, and retired
/// ones leave). An unknown `kid` triggers at most one refetch per
/// `min_refresh` (no thundering herd on garbage tokens), and concurrent
/// callers share one fetch; if the endpoint is down the cached keys keep
/// working.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tessera_resource::{AccessTokenVerifier, RemoteJwks};
///
/// let jwks = RemoteJwks::new("https://auth.example.com/.well-known/jwks.json")
///     .min_refresh(Duration::from_secs(10));
/// let verifier = AccessTokenVerifier::new(Arc::new(jwks), "https://auth.example.com", "https://api.example.com");
/// ```
pub struct RemoteJwks {
    url: String,
    http: reqwest::Client,
    min_refresh: Duration,
    cache: RwLock<JwksCache>,
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksCache {
    keys: KeyMap,
    /// When a fetch was last tried, successful or not.
    attempted: Option<Instant>,
    /// Until when the last fetched set may be used without asking again.
    fresh_until: Option<Instant>,
}

/// Used when the JWKS response says nothing about caching.
const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// The `max-age` of a `Cache-Control` header, capped at a day.
fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|d| d.trim().strip_prefix("max-age="))
                .find_map(|n| n.parse::<u64>().ok())
        })
        .map_or(DEFAULT_JWKS_MAX_AGE, |s| {
            Duration::from_secs(s.min(24 * 3600))
        })
}

impl RemoteJwks {
    /// The JWKS at `url` (Tessera: `{issuer}/.well-known/jwks.json`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            http: client(Duration::from_secs(5)),
            min_refresh: Duration::from_secs(10),
            cache: RwLock::new(JwksCache::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// How often an unknown `kid` may trigger a refetch. Default 10 s.
    pub fn min_refresh(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, JwksCache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> {
        self.read().keys.get(kid).cloned()
    }

    fn is_stale(&self) -> bool {
        self.read()
            .fresh_until
            .is_none_or(|at| Instant::now() >= at)
    }

    fn may_refresh(&self) -> bool {
        self.read()
            .attempted
            .is_none_or(|at| at.elapsed() >= self.min_refresh)
    }

    async fn refetch(&self) {
        let fetched = async {
            let response = self.http.get(&self.url).send().await?;
            let response = response.error_for_status()?;
            let max_age = max_age(response.headers());
            Ok::<_, reqwest::Error>((response.json::<JwkSet>().await?, max_age))
        }
        .await;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        cache.attempted = Some(now);
        match fetched {
            Ok((set, max_age)) => {
                cache.keys = decoding_keys(&set);
                cache.fresh_until = Some(now + max_age);
            }
            Err(e) => {
                // Keep what we have and ask again after `min_refresh`.
                cache.fresh_until = Some(now + self.min_refresh);
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the cached keys");
            }
        }
    }
}

#[async_trait]
impl KeySource for RemoteJwks {
    async fn key(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> {
        // Whoever gets the lock first refetches; the others find the
        // condition gone once they get it.
        if self.is_stale() {
            let _single_flight = self.refresh.lock().await;
            if self.is_stale() {
                self.refetch().await;
            }
        }
        if self.cached(kid).is_none() && self.may_refresh() {
            let _single_flight = self.refresh.lock().await;
            if self.cached(kid).is_none() && self.may_refresh() {
                self.refetch().await;
            }
        }
        self.cached(kid)
    }
}

/// Revocation through the issuer's RFC 7662 `/introspect`, authenticated
/// as a confidential client (HTTP Basic). Answers are cached by `jti`:
/// "active" for [`cache_ttl`](Self::cache_ttl) (default 30 s), "not active"
/// until the token expires (a revoked token stays revoked). When
/// `/introspect` cannot be reached the check fails closed (503) unless
/// [`fail_open`](Self::fail_open) was chosen.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tessera_resource::{AccessTokenVerifier, Introspection, RemoteJwks};
///
/// let introspection = Introspection::new("https://auth.example.com/introspect", "orders-api", "s3cret")
///     .cache_ttl(Duration::from_secs(10));
/// let verifier = AccessTokenVerifier::new(
///     Arc::new(RemoteJwks::new("https://auth.example.com/.well-known/jwks.json")),
///     "https://auth.example.com",
///     "https://api.example.com",
/// )
/// .revocation(Arc::new(introspection));
/// ```
pub struct Introspection {
    url: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    ttl: Duration,
    fail_open: bool,
    max_entries: usize,
    cache: Mutex<HashMap<String, Answer>>,
}

#[derive(Clone, Copy)]
struct Answer {
    revoked: bool,
    until: Instant,
}

impl Introspection {
    /// `/introspect` at `url`, asked as the client `client_id`.
    pub fn new(
        url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            http: client(Duration::from_secs(5)),
            ttl: Duration::from_secs(30),
            fail_open: false,
            max_entries: 10_000,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// How long an "active" answer is reused. `Duration::ZERO` asks every
    /// time. Default 30 s.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// When `/introspect` is unreachable or answers an error: `true`
    /// accepts the (signature-valid) token with a warning, `false` (the
    /// default) refuses it with [`VerifyError::Unavailable`].
    pub fn fail_open(mut self, open: bool) -> Self {
        self.fail_open = open;
        self
    }

    /// At most this many cached answers. Default 10 000.
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    fn cached(&self, jti: &str) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(jti)
            .filter(|a| Instant::now() < a.until)
            .map(|a| a.revoked)
    }

    fn remember(&self, claims: &AccessClaims, revoked: bool) {
        if claims.jti.is_empty() || self.max_entries == 0 {
            return;
        }
        let now = Instant::now();
        let ttl = if revoked {
            let left = claims
                .exp
                .saturating_sub(crate::Clock::now(&crate::SystemClock));
            Duration::from_secs(u64::try_from(left).unwrap_or(0).clamp(1, 24 * 3600))
        } else {
            self.ttl
        };
        if ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.max_entries {
            cache.retain(|_, a| now < a.until);
            if cache.len() >= self.max_entries {
                cache.clear();
            }
        }
        cache.insert(
            claims.jti.clone(),
            Answer {
                revoked,
                until: now + ttl,
            },
        );
    }

    async fn ask(&self, token: &str) -> Result<bool, reqwest::Error> {
        #[derive(serde::Deserialize)]
        struct Reply {
            active: bool,
        }
        let reply: Reply = self
            .http
            .post(&self.url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(!reply.active)
    }
}

#[async_trait]
impl RevocationCheck for Introspection {
    async fn is_revoked(&self, token: &str, claims: &AccessClaims) -> Result<bool, VerifyError> {
        if let Some(revoked) = self.cached(&claims.jti) {
            return Ok(revoked);
        }
        match self.ask(token).await {
            Ok(revoked) => {
                self.remember(claims, revoked);
                Ok(revoked)
            }
            Err(e) if self.fail_open => {
                tracing::warn!(url = %self.url, error = %e, "introspection failed; accepting the token (fail-open)");
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "introspection failed; refusing the token (fail-closed)");
                Err(VerifyError::Unavailable)
            }
        }
    }
}
