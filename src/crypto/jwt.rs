//! RFC 9068 access tokens: claims and signing with a key kept parsed in memory.
//! Verification lives in the `tessera-resource` crate (re-exported as
//! [`crate::resource`]), which other services reuse.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::crypto::keys::{KeyError, SigningKey};

pub use tessera_resource::{ACCESS_TOKEN_TYP, AccessClaims};

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` as a compact JWS with `key`.
pub fn sign(claims: &AccessClaims, key: &SigningKey) -> Result<String, KeyError> {
    sign_jws(claims, ACCESS_TOKEN_TYP, key)
}

/// Signs any claims as a compact JWS of type `typ` with `key`, which stays
/// parsed in memory (no per-token key parsing).
pub fn sign_jws<T: Serialize>(claims: &T, typ: &str, key: &SigningKey) -> Result<String, KeyError> {
    let header = Header {
        alg: key.alg().as_str(),
        typ,
        kid: key.kid(),
    };
    let header = serde_json::to_vec(&header).map_err(|_| KeyError::Signing)?;
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Signing)?;
    let mut token = String::with_capacity(1024);
    URL_SAFE_NO_PAD.encode_string(header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// The `typ` of ID tokens (OIDC Core does not fix one; `JWT` is what
/// relying-party libraries expect).
pub const ID_TOKEN_TYP: &str = "JWT";

/// Claims of an OpenID Connect ID token (Core §2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    /// The client id.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// When the user signed in to the session.
    pub auth_time: i64,
    /// The authorization request's `nonce`, byte for byte (code flow only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of the access token's hash (Core §3.1.3.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    pub azp: String,
    /// The sign-in session (Front/Back-Channel Logout).
    pub sid: String,
    pub amr: Vec<String>,
}

/// OIDC Core §3.1.3.6 `at_hash` (and `c_hash`): the left half of the hash
/// of `token` with the hash function of `alg` (SHA-256 for RS256 and ES256;
/// SHA-512 for EdDSA, as other providers do), base64url.
pub fn left_half_hash(token: &str, alg: crate::config::SigningAlg) -> String {
    use crate::config::SigningAlg;
    use sha2::Digest;
    let digest: Vec<u8> = match alg {
        SigningAlg::RS256 | SigningAlg::ES256 => sha2::Sha256::digest(token.as_bytes()).to_vec(),
        SigningAlg::EdDSA => sha2::Sha512::digest(token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_the_left_half_of_the_digest() {
        // OIDC Core §A.3's example: access token and its at_hash (RS256).
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(
            left_half_hash(token, crate::config::SigningAlg::RS256),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(
            left_half_hash(token, crate::config::SigningAlg::EdDSA).len(),
            43
        );
    }
}
