//! Verify [Tessera](https://github.com/tessera-auth/tessera) access tokens
//! (RFC 9068 JWTs) in a Rust resource server.
//!
//! * [`AccessTokenVerifier`]: signature against a [`KeySource`], `typ:
//!   at+jwt`, the algorithm allow-list (RS256, ES256, EdDSA, each bound to
//!   its key's algorithm), `crit`/`cty` refused, `iss`, `aud`, `exp`/`iat`
//!   with a leeway, then an optional [`RevocationCheck`].
//! * `RemoteJwks` (feature `remote`): the issuer's JWKS over HTTP, cached for
//!   the `max-age` it is served with, refetched once on an unknown `kid`.
//! * `Introspection` (feature `remote`): revocation through the issuer's
//!   `/introspect`, with a short cache and a fail-closed/fail-open choice.
//! * `Authenticated`, `RequireScope` and `BearerLayer` (feature `axum`):
//!   axum extractors and a tower layer answering RFC 6750 errors, and the
//!   RFC 9449 ones for DPoP.
//! * [`dpop`]: the stateless checks of a DPoP proof (RFC 9449 §4.3), the
//!   RFC 7638 thumbprint a token's `cnf.jkt` names, and `ath`.
//!
//! ```
//! use std::sync::Arc;
//! use tessera_resource::{AccessTokenVerifier, KeySource, VerifyError};
//! # use jsonwebtoken::{Algorithm, DecodingKey};
//! # struct NoKeys;
//! # #[async_trait::async_trait]
//! # impl KeySource for NoKeys {
//! #     async fn key(&self, _kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> { None }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let verifier = AccessTokenVerifier::new(Arc::new(NoKeys), "https://auth.example.com", "https://api.example.com")
//!     .leeway(30);
//! let refused = verifier.verify("not-a-jwt").await;
//! assert!(matches!(refused, Err(VerifyError::Invalid("malformed token"))));
//! # }
//! ```
//!
//! # DPoP-bound tokens
//!
//! A token whose claims carry `cnf.jkt` ([`AccessClaims::cnf`]) is bound
//! to the client's key (RFC 9449): it is accepted only as
//! `Authorization: DPoP <token>` with one `DPoP` header holding a proof
//! signed by that key. [`AccessTokenVerifier::verify_dpop`] (which the axum
//! extractors and the layer call) checks the token as
//! [`verify`](AccessTokenVerifier::verify) does, then the proof: `typ`,
//! algorithm and public key, signature, `htm` (the method), `htu` (the
//! [`dpop_base_url`](AccessTokenVerifier::dpop_base_url) plus the path),
//! `iat` within [`dpop_max_age`](AccessTokenVerifier::dpop_max_age) and
//! the leeway, `ath` (the token's hash), the key's thumbprint against
//! `cnf.jkt`, and that the proof was never seen, through a [`ProofReplay`]
//! ([`MemoryReplay`] by default: several nodes must share one instead). A
//! bound token presented as `Bearer` is refused (§7.2).
//!
//! ```
//! use std::sync::Arc;
//! use tessera_resource::{AccessTokenVerifier, MemoryReplay, jwk::StaticKeys};
//!
//! let verifier = AccessTokenVerifier::new(Arc::new(StaticKeys::default()), "https://auth.example.com", "https://api.example.com")
//!     // The origin clients call, as they put it in `htu`.
//!     .dpop_base_url("https://api.example.com")
//!     // One process; with several nodes, a shared cache (see `ProofReplay`).
//!     .dpop_replay(Arc::new(MemoryReplay::new()))
//!     .dpop_max_age(60);
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

pub mod dpop;
pub mod jwk;
mod replay;

pub use replay::{MemoryReplay, ProofReplay};

use dpop::{DpopError, ProofCheck, VerifiedProof, verify_proof};

#[cfg(feature = "remote")]
mod remote;
#[cfg(feature = "remote")]
pub use remote::{Introspection, RemoteJwks};

#[cfg(feature = "axum")]
mod web;
#[cfg(feature = "axum")]
pub use web::{
    AuthRejection, AuthScheme, Authenticated, BearerLayer, BearerRejection, BearerService,
    RequireScope, Scope, ScopeRejection,
};

/// The `typ` header of every access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Longest token the verifier looks at; anything longer is not ours.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Whether `path` has a `.` or `..` segment, plain or percent-encoded.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

/// Claims of a Tessera access token (RFC 9068 §2.2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// The issuer.
    pub iss: String,
    /// The user id; the client id for `client_credentials`.
    pub sub: String,
    /// The audience (the resource servers the token is for).
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: i64,
    /// The token's unique id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The user's role (user tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The sign-in session (user tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The refresh-token family the token came from (user tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fid: Option<String>,
    /// The user's credential epoch when the sign-in began (user tokens
    /// only): the token dies when the epoch moves past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cep: Option<u64>,
    /// The key the token is bound to (RFC 9449 §6.1), for DPoP-bound
    /// tokens: it must then come with a proof signed by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` (confirmation) claim of a DPoP-bound token (RFC 9449 §6.1).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    /// The RFC 7638 SHA-256 thumbprint (base64url) of the client's DPoP
    /// public key.
    pub jkt: String,
}

impl AccessClaims {
    /// The family whose revocation revokes this token.
    pub fn family(&self) -> Option<&str> {
        self.fid.as_deref().or(self.sid.as_deref())
    }

    /// The credential epoch the token belongs to. Tokens from before epochs
    /// existed are judged by their issue time, in milliseconds.
    pub fn epoch(&self) -> u64 {
        self.cep
            .unwrap_or_else(|| u64::try_from(self.iat).unwrap_or(0).saturating_mul(1000))
    }

    /// The thumbprint of the key the token is bound to; `None` for a
    /// plain Bearer token.
    pub fn jkt(&self) -> Option<&str> {
        self.cnf.as_ref().map(|c| c.jkt.as_str())
    }

    /// Whether the token grants `scope`.
    ///
    /// ```
    /// # let claims: tessera_resource::AccessClaims = serde_json::from_value(serde_json::json!({
    /// #   "iss": "i", "sub": "s", "aud": "a", "exp": 0, "iat": 0, "jti": "j",
    /// #   "client_id": "c", "scope": "items:read profile"})).unwrap();
    /// assert!(claims.has_scope("items:read"));
    /// assert!(!claims.has_scope("items"));
    /// ```
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

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

/// Why a request with a DPoP-bound token was refused (RFC 9449 §7.1). The
/// texts are safe to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopRejection {
    /// The access token is refused (`invalid_token`), including a token
    /// that is not DPoP-bound.
    #[error("{0}")]
    Token(&'static str),
    /// The proof is refused (`invalid_dpop_proof`), including a replay.
    #[error("{0}")]
    Proof(&'static str),
    /// The revocation state or the replay cache could not be read: the
    /// answer is 503.
    #[error("token state unavailable")]
    Unavailable,
}

impl DpopRejection {
    /// A DPoP-bound token presented as a Bearer token (RFC 9449 §7.2).
    pub const BOUND_TOKEN_AS_BEARER: &'static str =
        "the token is DPoP-bound: present it with the DPoP scheme and a proof";
    /// A Bearer token presented under the DPoP scheme.
    pub const UNBOUND_TOKEN: &'static str = "the token is not DPoP-bound";
    /// The proof's `jti` was seen before.
    pub const REPLAYED: &'static str = "the proof was already used";
    /// The proof is signed by another key than the token's `cnf.jkt`.
    pub const WRONG_KEY: &'static str = "the proof's key is not the key the token is bound to";
}

impl From<VerifyError> for DpopRejection {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Invalid(why) => Self::Token(why),
            VerifyError::Unavailable => Self::Unavailable,
        }
    }
}

/// Where verification keys come from.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The key with `kid` and the one algorithm it may verify.
    async fn key(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)>;
}

/// Decides whether a signature-valid token has been revoked since issue.
#[async_trait]
pub trait RevocationCheck: Send + Sync {
    /// `Ok(true)` if `token` (whose verified claims are `claims`) is revoked;
    /// [`VerifyError::Unavailable`] if that cannot be known now.
    async fn is_revoked(&self, token: &str, claims: &AccessClaims) -> Result<bool, VerifyError>;
}

/// The wall clock `exp` and `iat` are judged by, so tests can move it.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system clock (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
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

/// Whether a `Host` header is a host and an optional port only: no user
/// info, path, query or fragment that would change what `htu` is built to.
fn is_plain_authority(host: &str) -> bool {
    host.len() <= 300
        && url::Url::parse(&format!("https://{host}/")).is_ok_and(|url| {
            url.host().is_some()
                && url.username().is_empty()
                && url.password().is_none()
                && url.path() == "/"
                && url.query().is_none()
                && url.fragment().is_none()
                && !host.contains(['/', '?', '#', '@', '\\'])
        })
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

/// Verifies access tokens: signature, `typ`, `iss`, `aud`, `exp`/`iat`
/// with a small leeway, then the revocation state; for DPoP-bound tokens
/// also the proof ([`verify_dpop`](Self::verify_dpop)).
pub struct AccessTokenVerifier {
    keys: Arc<dyn KeySource>,
    issuer: String,
    audience: String,
    leeway: i64,
    clock: Arc<dyn Clock>,
    revocation: Option<Arc<dyn RevocationCheck>>,
    dpop_base: Option<String>,
    replay: Arc<dyn ProofReplay>,
    /// The replay cache is the default [`MemoryReplay`], which follows
    /// [`clock`](Self::clock).
    default_replay: bool,
    dpop_max_age: u64,
    /// Clock skew allowed on a proof's `iat` (either side of the window):
    /// a few seconds, not the token leeway, so that proofs made ahead of
    /// time do not stay usable for long.
    dpop_leeway: u64,
}

impl AccessTokenVerifier {
    /// A verifier for tokens from `issuer` meant for `audience`.
    pub fn new(keys: Arc<dyn KeySource>, issuer: &str, audience: &str) -> Self {
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: 30,
            clock: Arc::new(SystemClock),
            revocation: None,
            dpop_base: None,
            replay: Arc::new(MemoryReplay::new()),
            default_replay: true,
            dpop_max_age: 60,
            dpop_leeway: 5,
        }
    }

    /// Seconds of tolerated clock skew on `exp` and `iat`. Default 30.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = i64::try_from(seconds).unwrap_or(i64::MAX);
        self
    }

    /// The clock `exp` is checked against (tests move it). Default
    /// [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        if self.default_replay {
            self.replay = Arc::new(MemoryReplay::new().clock(self.clock.clone()));
        }
        self
    }

    /// Consults `check` after the signature (Tessera: its token store;
    /// another service: e.g. `Introspection`).
    pub fn revocation(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(check);
        self
    }

    /// The public origin of this API (e.g. `https://api.example.com`, or
    /// with a path prefix a proxy strips), which a DPoP proof's `htu` must
    /// name: `htu` must equal this base plus the request's path, both
    /// compared after [`normalize_htu`](dpop::normalize_htu).
    ///
    /// When it is not set, the base is `http://` or `https://` (either is
    /// accepted) followed by the request's `Host` header. Behind a proxy
    /// or a load balancer that rewrites `Host` or the path, or terminates
    /// TLS, set it: the origin clients call is then the only one accepted.
    pub fn dpop_base_url(mut self, url: &str) -> Self {
        let base = url.trim_end_matches('/');
        if dpop::normalize_htu(base).is_none() {
            tracing::warn!(
                base,
                "dpop_base_url is not an absolute http(s) URL: every DPoP proof will be refused"
            );
        }
        self.dpop_base = Some(base.to_owned());
        self
    }

    /// Where the DPoP proofs already seen are remembered. Default: a
    /// [`MemoryReplay`], right for a single process only; several nodes
    /// must share one (see [`ProofReplay`]).
    pub fn dpop_replay(mut self, replay: Arc<dyn ProofReplay>) -> Self {
        self.replay = replay;
        self.default_replay = false;
        self
    }

    /// Clock skew (seconds) allowed on a DPoP proof's `iat`, on either side
    /// of its window. Default 5 (the token's [`leeway`](Self::leeway) is
    /// for the token's `exp`, and would let proofs made ahead of time live
    /// on).
    pub fn dpop_leeway(mut self, seconds: u64) -> Self {
        self.dpop_leeway = seconds;
        self
    }

    /// How old (seconds) a DPoP proof's `iat` may be. Default 60; the
    /// [`dpop_leeway`](Self::dpop_leeway) is allowed on top, and for an
    /// `iat` in the future.
    pub fn dpop_max_age(mut self, seconds: u64) -> Self {
        self.dpop_max_age = seconds;
        self
    }

    /// The claims of `token` if it is a live access token.
    ///
    /// It does not judge how the token was presented: a caller that took it
    /// from an `Authorization: Bearer` header must refuse a DPoP-bound one
    /// (`claims.cnf` set, RFC 9449 §7.2), as the axum extractors do.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let claims = self.verify_signature(token).await?;
        if let Some(check) = &self.revocation
            && check.is_revoked(token, &claims).await?
        {
            return Err(VerifyError::Invalid("token revoked"));
        }
        Ok(claims)
    }

    /// The claims of a DPoP-bound `token` presented with `proof` (the
    /// `DPoP` header) on a request with `method` for `path` (without the
    /// query), to a server reached as `host` (the `Host` header, used only
    /// without a [`dpop_base_url`](Self::dpop_base_url)).
    ///
    /// The token is verified as by [`verify`](Self::verify) and must carry
    /// `cnf.jkt`; the proof must pass [`verify_proof`] for this request and
    /// token (`ath`), within [`dpop_max_age`](Self::dpop_max_age), be
    /// signed by the key `cnf.jkt` names, and be new to the
    /// [`dpop_replay`](Self::dpop_replay) cache.
    pub async fn verify_dpop(
        &self,
        token: &str,
        proof: &str,
        method: &str,
        path: &str,
        host: Option<&str>,
    ) -> Result<AccessClaims, DpopRejection> {
        let claims = self.verify(token).await?;
        let bound_to = claims
            .jkt()
            .ok_or(DpopRejection::Token(DpopRejection::UNBOUND_TOKEN))?;
        let proven = self
            .check_proof(proof, token, method, path, host)
            .map_err(|e| DpopRejection::Proof(e.reason()))?;
        if proven.jkt != bound_to {
            return Err(DpopRejection::Proof(DpopRejection::WRONG_KEY));
        }
        self.remember_proof(&proven).await?;
        Ok(claims)
    }

    /// The stateless checks, against each URI the request may have been
    /// made to: the configured base, else `https` then `http` on `Host`.
    fn check_proof(
        &self,
        proof: &str,
        token: &str,
        method: &str,
        path: &str,
        host: Option<&str>,
    ) -> Result<VerifiedProof, DpopError> {
        // `htu` is compared after dot segments are resolved, but the router
        // sees the raw path: a path with dot segments could be routed
        // elsewhere than the URI the proof was made for.
        if has_dot_segment(path) {
            return Err(DpopError::Uri);
        }
        let now = u64::try_from(self.clock.now()).unwrap_or(0);
        let mut outcome = Err(DpopError::Uri);
        for uri in self.request_uris(path, host) {
            let check = ProofCheck::new(method, &uri, now)
                .max_age(self.dpop_max_age)
                .leeway(self.dpop_leeway)
                .access_token(token);
            outcome = verify_proof(proof, &check);
            if outcome != Err(DpopError::Uri) {
                break;
            }
        }
        outcome
    }

    fn request_uris(&self, path: &str, host: Option<&str>) -> Vec<String> {
        match (&self.dpop_base, host.filter(|h| is_plain_authority(h))) {
            (Some(base), _) => vec![format!("{base}{path}")],
            (None, Some(host)) => ["https", "http"]
                .iter()
                .map(|scheme| format!("{scheme}://{host}{path}"))
                .collect(),
            (None, None) => Vec::new(),
        }
    }

    /// Records the proof in the replay cache for as long as its `iat`
    /// would be accepted; refuses it if it was there already.
    async fn remember_proof(&self, proven: &VerifiedProof) -> Result<(), DpopRejection> {
        let expires_at = proven
            .iat
            .saturating_add(self.dpop_max_age)
            .saturating_add(self.dpop_leeway)
            .saturating_add(1);
        let key = replay::replay_key(&proven.jkt, &proven.jti);
        match self.replay.first_use(&key, expires_at).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DpopRejection::Proof(DpopRejection::REPLAYED)),
            Err(_) => Err(DpopRejection::Unavailable),
        }
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bound_tests;
