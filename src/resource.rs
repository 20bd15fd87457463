//! The resource layer: verifies Tessera access tokens for an axum service.
//!
//! Tessera guards its own `/api` endpoints with it, and any other axum
//! service can reuse it against Tessera's JWKS over HTTP:
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get, extract::FromRef};
//! use tessera::resource::{AccessTokenVerifier, Authenticated, RemoteJwks};
//!
//! #[derive(Clone, FromRef)]
//! struct State { verifier: Arc<AccessTokenVerifier> }
//!
//! async fn hello(auth: Authenticated) -> String { format!("hello {}", auth.claims.sub) }
//!
//! # async fn run() {
//! let jwks = RemoteJwks::new("https://auth.example.com/.well-known/jwks.json");
//! let verifier = AccessTokenVerifier::new(Arc::new(jwks), "https://auth.example.com", "https://auth.example.com");
//! let app: Router = Router::new().route("/hello", get(hello)).with_state(State { verifier: Arc::new(verifier) });
//! # }
//! ```

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::clock::Clock;
use crate::crypto::jwk::{KeyMap, decoding_keys};
use crate::crypto::jwt::{ACCESS_TOKEN_TYP, AccessClaims};
use crate::crypto::keys::KeyRing;
use crate::problem::problem;

/// Longest token the verifier looks at; anything longer is not ours.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a presented access token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Missing, malformed, expired, wrongly signed, wrong audience or revoked
    /// (RFC 6750 `invalid_token`). The text is safe to show the client.
    #[error("{0}")]
    Invalid(&'static str),
    /// The revocation state could not be read: the answer is 503, not 401,
    /// so that an outage never looks like a logout.
    #[error("token state unavailable")]
    Unavailable,
}

/// Where verification keys come from.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The key with `kid` and the algorithm it is for.
    async fn key(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)>;
}

/// Decides whether a signature-valid token has been revoked since issue.
#[async_trait]
pub trait RevocationCheck: Send + Sync {
    async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool, VerifyError>;
}

fn algorithm_of(alg: &str) -> Option<Algorithm> {
    // Only the asymmetric algorithms Tessera signs with. `none` and every
    // HMAC algorithm are refused before a key is looked at, which is what
    // defeats the HS256-with-the-public-key confusion attack.
    match alg {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Tessera's own keys, in process: follows the node's [`KeyRing`], so a
/// rotation is seen by the resource layer the moment it is loaded.
pub struct LocalKeys {
    ring: Arc<KeyRing>,
}

impl LocalKeys {
    pub fn new(ring: Arc<KeyRing>) -> Self {
        Self { ring }
    }
}

#[async_trait]
impl KeySource for LocalKeys {
    async fn key(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> {
        self.ring.current().decoding_key(kid)
    }
}

/// A JWKS fetched over HTTP and cached for the `max-age` the server sends
/// (so keys pre-published by a rotation arrive before they sign, and retired
/// ones leave). An unknown `kid` triggers at most one refetch per
/// `min_refresh` (no thundering herd on garbage tokens); if the endpoint is
/// down the cached keys keep working.
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
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "JWKS client: cannot set the 5 s timeout; using reqwest's defaults");
                    reqwest::Client::new()
                }),
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

/// The JOSE header members we look at.
struct JoseHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    /// `crit` (extensions we would have to understand, RFC 7515 §4.1.11: we
    /// understand none) or `cty` (a nested JWT, which access tokens never
    /// are) is present, whatever its value, `null` included.
    refused_member: bool,
}

fn parse_header(token: &str) -> Result<JoseHeader, VerifyError> {
    let malformed = || VerifyError::Invalid("malformed token");
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    let members: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    // A member of the wrong type is malformed, not absent.
    let string = |name: &str| -> Result<Option<String>, VerifyError> {
        match members.get(name) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed()),
        }
    };
    Ok(JoseHeader {
        alg: string("alg")?.ok_or_else(malformed)?,
        typ: string("typ")?,
        kid: string("kid")?,
        refused_member: members.contains_key("crit") || members.contains_key("cty"),
    })
}

/// Verifies access tokens: signature, `typ`, `iss`, `aud`, `exp`/`nbf`/`iat`
/// with a small leeway, then the revocation state.
pub struct AccessTokenVerifier {
    keys: Arc<dyn KeySource>,
    issuer: String,
    audience: String,
    leeway: i64,
    clock: Clock,
    revocation: Option<Arc<dyn RevocationCheck>>,
}

impl AccessTokenVerifier {
    pub fn new(keys: Arc<dyn KeySource>, issuer: &str, audience: &str) -> Self {
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: 30,
            clock: Clock::system(),
            revocation: None,
        }
    }

    /// Seconds of tolerated clock skew on `exp`, `nbf` and `iat`. Default 30.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = i64::try_from(seconds).unwrap_or(i64::MAX);
        self
    }

    /// The clock `exp` is checked against (tests move it).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Consults `check` after the signature (Tessera: its token store;
    /// another service: e.g. introspection).
    pub fn revocation(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(check);
        self
    }

    /// The claims of `token` if it is a live access token.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let claims = self.verify_signature(token).await?;
        if let Some(check) = &self.revocation
            && check.is_revoked(&claims).await?
        {
            return Err(VerifyError::Invalid("token revoked"));
        }
        Ok(claims)
    }

    /// Every check but revocation: signature, type, issuer, audience, time.
    pub async fn verify_signature(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Invalid("malformed token"));
        }
        let header = parse_header(token)?;
        if header.refused_member {
            return Err(VerifyError::Invalid("unsupported token header"));
        }
        // RFC 9068 §4: reject anything not typed as an access token.
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Invalid("not an access token"));
        }
        let alg = algorithm_of(&header.alg).ok_or(VerifyError::Invalid("unsupported algorithm"))?;
        let kid = header.kid.ok_or(VerifyError::Invalid("unknown key"))?;
        let (key_alg, key) = self
            .keys
            .key(&kid)
            .await
            .ok_or(VerifyError::Invalid("unknown key"))?;
        if key_alg != alg {
            return Err(VerifyError::Invalid("algorithm does not match the key"));
        }
        let mut validation = Validation::new(alg);
        // Time is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|_| VerifyError::Invalid("invalid token"))?;
        let claims = data.claims;
        let now = self.clock.now();
        if claims.exp + self.leeway <= now {
            return Err(VerifyError::Invalid("token expired"));
        }
        if claims.iat - self.leeway > now {
            return Err(VerifyError::Invalid("token used before issued"));
        }
        Ok(claims)
    }
}

/// An axum extractor for a verified `Authorization: Bearer` access token.
/// Needs `Arc<AccessTokenVerifier>: FromRef<S>`.
#[derive(Clone)]
pub struct Authenticated {
    pub claims: AccessClaims,
    /// The raw token, for handlers that revoke it.
    pub token: String,
}

/// The claims only: the raw token is a bearer credential and never printed.
impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<AccessTokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<AccessTokenVerifier>::from_ref(state);
        let token = bearer_token(parts)?;
        let claims = verifier.verify(token).await.map_err(BearerRejection)?;
        Ok(Self {
            claims,
            token: token.to_owned(),
        })
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, BearerRejection> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(BearerRejection(VerifyError::Invalid(
            "missing bearer token",
        )));
    };
    let value = value
        .to_str()
        .map_err(|_| BearerRejection(VerifyError::Invalid("malformed authorization header")))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(BearerRejection(VerifyError::Invalid(
            "missing bearer token",
        )))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerRejection(VerifyError::Invalid(
            "missing bearer token",
        )));
    }
    Ok(token.trim())
}

/// RFC 6750 §3 answer: 401 with `WWW-Authenticate: Bearer error="invalid_token"`
/// (or 503 when the revocation state could not be read), as problem+json.
#[derive(Debug)]
pub struct BearerRejection(pub VerifyError);

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        match self.0 {
            VerifyError::Invalid(description) => {
                let mut response =
                    problem(StatusCode::UNAUTHORIZED, "invalid_token", description, None);
                let challenge =
                    format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                response
            }
            VerifyError::Unavailable => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                "the token store is unavailable; try again shortly",
                None,
            ),
        }
    }
}
