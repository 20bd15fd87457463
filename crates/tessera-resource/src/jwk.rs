//! Verification keys from JWKs: each key with the one algorithm it may
//! verify. [`decoding_key`] is strict (a key that cannot verify is an
//! error); [`decoding_keys`] skips the keys of a fetched set it cannot use.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Decoding keys by `kid`, each with the one algorithm it may verify.
pub type KeyMap = HashMap<String, (Algorithm, Arc<DecodingKey>)>;

/// The algorithms Tessera signs with, and so the only ones a JWK may be
/// used for.
pub fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    match alg {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Why a JWK gives no verification key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// Not a JWK at all.
    #[error("it is not a JWK")]
    Malformed,
    /// No `kid`.
    #[error("it has no kid")]
    NoKid,
    /// No `alg`, or one outside the allow-list.
    #[error("its alg is missing or not RS256, ES256 or EdDSA")]
    Algorithm,
    /// The key material is unusable.
    #[error("its key material cannot be used to verify")]
    Material,
}

/// The `kid` of `jwk` and its verification key.
pub fn decoding_key(jwk: &Jwk) -> Result<(String, (Algorithm, Arc<DecodingKey>)), JwkError> {
    let kid = jwk.common.key_id.clone().ok_or(JwkError::NoKid)?;
    let alg = jwk
        .common
        .key_algorithm
        .and_then(key_algorithm)
        .ok_or(JwkError::Algorithm)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| JwkError::Material)?;
    Ok((kid, (alg, Arc::new(key))))
}

/// The verification key of one JWK given as JSON.
pub fn decoding_key_of(
    jwk: &serde_json::Value,
) -> Result<(String, (Algorithm, Arc<DecodingKey>)), JwkError> {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).map_err(|_| JwkError::Malformed)?;
    decoding_key(&jwk)
}

/// Parses a JWK Set into decoding keys, skipping keys we cannot use.
pub fn decoding_keys(set: &JwkSet) -> KeyMap {
    set.keys
        .iter()
        .filter_map(|jwk| decoding_key(jwk).ok())
        .collect()
}

/// A fixed set of keys, e.g. a JWKS read from a file: a
/// [`KeySource`](crate::KeySource) that never fetches.
#[derive(Clone, Default)]
pub struct StaticKeys(pub KeyMap);

impl StaticKeys {
    /// The usable keys of `set`.
    pub fn from_set(set: &JwkSet) -> Self {
        Self(decoding_keys(set))
    }
}

#[async_trait::async_trait]
impl crate::KeySource for StaticKeys {
    async fn key(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> {
        self.0.get(kid).cloned()
    }
}
