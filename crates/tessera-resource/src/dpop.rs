//! DPoP proofs (RFC 9449): the checks of §4.3 that need no state, the JWK
//! thumbprint that binds a token to the proof's key (RFC 7638), and the
//! access-token hash `ath`.
//!
//! What these functions leave to the caller, because it needs state:
//! remembering each proof's `jti` for as long as its `iat` is acceptable (a
//! replay cache shared by every node), and checking the `nonce` when it
//! hands out server nonces (§8, `use_dpop_nonce`). At a resource server,
//! [`AccessTokenVerifier::verify_dpop`](crate::AccessTokenVerifier::verify_dpop)
//! (and the axum extractors) do the first, with a
//! [`ProofReplay`](crate::ProofReplay).
//!
//! ```
//! use tessera_resource::dpop::{ProofCheck, verify_proof};
//! let check = ProofCheck::new("POST", "https://auth.example.com/token", 1_700_000_000);
//! assert!(verify_proof("not-a-proof", &check).is_err());
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `typ` header of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The algorithms a proof may be signed with: asymmetric only (§4.2), and
/// only those whose keys are worth the name.
pub const PROOF_ALGORITHMS: &[&str] = &["ES256", "EdDSA", "RS256", "PS256"];

/// Longest `DPoP` header value looked at: an RSA-4096 proof is under 2 KB.
const MAX_PROOF_LEN: usize = 8 * 1024;

/// Longest `jti` accepted: it is stored in the replay cache.
const MAX_JTI_LEN: usize = 256;

/// Longest `nonce` accepted.
const MAX_NONCE_LEN: usize = 512;

/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS: usize = 256;

/// JWK members that only a private or symmetric key has: a proof that
/// carries one is refused (§4.2: "MUST NOT contain a private key").
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof is refused. Every variant is `invalid_dpop_proof` on the
/// wire (§7.1); the [`reason`](Self::reason) is its `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopError {
    /// Not a compact JWS, or a part is not base64url JSON, or too long.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    Type,
    /// `alg` is missing, symmetric, `none` or outside the allow-list.
    Algorithm,
    /// `jwk` is missing, private, symmetric, too weak or not for `alg`.
    Key,
    /// A `crit` header: no extension is understood.
    Critical,
    /// The signature does not verify with the header's key.
    Signature,
    /// A required claim is missing or of the wrong type, or too long.
    Claims,
    /// `htm` is not the request's method.
    Method,
    /// `htu` is not the request's URI (without query and fragment).
    Uri,
    /// `iat` is outside the acceptable window.
    Time,
    /// `ath` is missing or is not the hash of the presented access token.
    AccessTokenHash,
}

impl DpopError {
    /// Why, in words safe to show the client.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "the proof is malformed",
            Self::Type => "the proof's typ is not dpop+jwt",
            Self::Algorithm => "the proof's alg is not allowed",
            Self::Key => "the proof's jwk is not a usable public key",
            Self::Critical => "the proof has a crit header",
            Self::Signature => "the proof's signature does not verify",
            Self::Claims => "the proof lacks a required claim",
            Self::Method => "the proof's htm does not match the request",
            Self::Uri => "the proof's htu does not match the request",
            Self::Time => "the proof's iat is outside the acceptable window",
            Self::AccessTokenHash => "the proof's ath does not match the access token",
        }
    }
}

impl std::fmt::Display for DpopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for DpopError {}

/// What a proof must match: the request it came with.
#[derive(Clone, Debug)]
pub struct ProofCheck<'a> {
    method: &'a str,
    uri: &'a str,
    now: u64,
    max_age: u64,
    leeway: u64,
    access_token: Option<&'a str>,
}

impl<'a> ProofCheck<'a> {
    /// A proof for `method` at `uri` (the absolute URI of the request as
    /// the server is reached, e.g. the issuer plus the path), at `now`
    /// (Unix seconds). By default a proof may be 60 s old and 5 s ahead.
    pub fn new(method: &'a str, uri: &'a str, now: u64) -> Self {
        Self {
            method,
            uri,
            now,
            max_age: 60,
            leeway: 5,
            access_token: None,
        }
    }

    /// How old (seconds) a proof's `iat` may be.
    pub fn max_age(mut self, seconds: u64) -> Self {
        self.max_age = seconds;
        self
    }

    /// Clock skew (seconds) allowed on either side of the window.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// The access token presented with the proof: `ath` must be its hash
    /// (at a resource server, §7.1).
    pub fn access_token(mut self, token: &'a str) -> Self {
        self.access_token = Some(token);
        self
    }

    /// The oldest `iat` accepted: a replay cache must remember a `jti`
    /// at least until a proof with this `iat` would be refused.
    pub fn oldest_iat(&self) -> u64 {
        self.now.saturating_sub(self.max_age + self.leeway)
    }
}

/// A proof that passed every stateless check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key (base64url):
    /// what `cnf.jkt` binds a token to.
    pub jkt: String,
    /// The proof's unique id, for the replay cache.
    pub jti: String,
    /// When the proof was made (Unix seconds).
    pub iat: u64,
    /// The server nonce the proof carries, if any (§8).
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: u64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// Checks a `DPoP` header value against the request (RFC 9449 §4.3, all
/// but the `jti` replay and the server nonce, which the caller checks).
pub fn verify_proof(proof: &str, check: &ProofCheck<'_>) -> Result<VerifiedProof, DpopError> {
    if proof.len() > MAX_PROOF_LEN || proof.split('.').count() != 3 {
        return Err(DpopError::Malformed);
    }
    let header = decode_header(proof)?;
    let alg = proof_algorithm(&header)?;
    let jwk = public_jwk(&header, alg)?;
    let claims = verify_signature(proof, &jwk, alg)?;
    check_claims(&claims, check)?;
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| DpopError::Key)?;
    Ok(VerifiedProof {
        jkt,
        jti: claims.jti,
        iat: claims.iat,
        nonce: claims.nonce,
    })
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, as `cnf.jkt` and
/// `dpop_jkt` carry it.
pub fn jwk_thumbprint(jwk: &Jwk) -> Option<String> {
    jwk.thumbprint(ThumbprintHash::SHA256).ok()
}

/// The `ath` of an access token: base64url of its SHA-256 (§4.2).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// `uri` as `htu` compares it: scheme and host in lower case, the default
/// port dropped, dot segments resolved, no query and no fragment (§4.3
/// point 9, RFC 3986 §6.2.2 and §6.2.3). `None` if it is not an absolute
/// http(s) URI.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let mut url = url::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url.into())
}

fn decode_header(proof: &str) -> Result<Map<String, Value>, DpopError> {
    let encoded = proof.split('.').next().ok_or(DpopError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| DpopError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(header)) => Ok(header),
        _ => Err(DpopError::Malformed),
    }
}

fn proof_algorithm(header: &Map<String, Value>) -> Result<Algorithm, DpopError> {
    if header.get("typ").and_then(Value::as_str) != Some(DPOP_TYP) {
        return Err(DpopError::Type);
    }
    if header.contains_key("crit") {
        return Err(DpopError::Critical);
    }
    match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Ok(Algorithm::ES256),
        Some("EdDSA") => Ok(Algorithm::EdDSA),
        Some("RS256") => Ok(Algorithm::RS256),
        Some("PS256") => Ok(Algorithm::PS256),
        _ => Err(DpopError::Algorithm),
    }
}

/// The header's `jwk`, if it is a public key of the kind `alg` needs.
fn public_jwk(header: &Map<String, Value>, alg: Algorithm) -> Result<Jwk, DpopError> {
    let Some(Value::Object(members)) = header.get("jwk") else {
        return Err(DpopError::Key);
    };
    if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
        return Err(DpopError::Key);
    }
    let kty = members.get("kty").and_then(Value::as_str);
    let crv = members.get("crv").and_then(Value::as_str);
    let fits = match alg {
        Algorithm::ES256 => kty == Some("EC") && crv == Some("P-256"),
        Algorithm::EdDSA => kty == Some("OKP") && crv == Some("Ed25519"),
        Algorithm::RS256 | Algorithm::PS256 => kty == Some("RSA") && rsa_strong_enough(members),
        _ => false,
    };
    if !fits {
        return Err(DpopError::Key);
    }
    serde_json::from_value(Value::Object(members.clone())).map_err(|_| DpopError::Key)
}

fn rsa_strong_enough(members: &Map<String, Value>) -> bool {
    members
        .get("n")
        .and_then(Value::as_str)
        .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
        // Leading zero bytes add length, not strength.
        .is_some_and(|n| n.iter().skip_while(|b| **b == 0).count() >= MIN_RSA_MODULUS)
}

fn verify_signature(proof: &str, jwk: &Jwk, alg: Algorithm) -> Result<ProofClaims, DpopError> {
    let key = DecodingKey::from_jwk(jwk).map_err(|_| DpopError::Key)?;
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    match jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => DpopError::Signature,
            jsonwebtoken::errors::ErrorKind::Json(_) => DpopError::Claims,
            _ => DpopError::Malformed,
        }),
    }
}

fn check_claims(claims: &ProofClaims, check: &ProofCheck<'_>) -> Result<(), DpopError> {
    let too_long = claims.jti.is_empty()
        || claims.jti.len() > MAX_JTI_LEN
        || claims
            .nonce
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NONCE_LEN);
    if too_long {
        return Err(DpopError::Claims);
    }
    if claims.htm != check.method {
        return Err(DpopError::Method);
    }
    let expected = normalize_htu(check.uri);
    if expected.is_none() || normalize_htu(&claims.htu) != expected {
        return Err(DpopError::Uri);
    }
    if claims.iat < check.oldest_iat() || claims.iat > check.now + check.leeway {
        return Err(DpopError::Time);
    }
    if let Some(token) = check.access_token {
        let expected = access_token_hash(token);
        if claims.ath.as_deref() != Some(expected.as_str()) {
            return Err(DpopError::AccessTokenHash);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "dpop_tests.rs"]
pub(crate) mod tests;
