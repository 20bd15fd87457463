//! Random secrets, their hashes and constant-time comparison.
//!
//! Every secret comes from the OS CSPRNG through [`random_bytes`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every refresh token, so secret scanners can find leaked ones.
/// NEVER CHANGE: tokens already issued carry it.
pub const REFRESH_TOKEN_PREFIX: &str = "tsr_";

/// Fills a fresh array from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS RNG failing is not recoverable: a server without entropy must not issue secrets.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut bytes).expect("the OS random number generator failed");
    bytes
}

/// `n` random bytes as unpadded base64url.
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// A new 24-hex-digit id (4 bytes of time, 8 random bytes), shaped like a
/// MongoDB ObjectId so ids look the same on every backend.
pub fn new_object_id(now: i64) -> String {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&(now as u32).to_be_bytes());
    id[4..].copy_from_slice(&random_bytes::<8>());
    hex::encode(id)
}

/// Constant-time equality for secrets and their digests.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// SHA-256 of `data`, hex encoded.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; the error case cannot happen.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A raw refresh token as handed to the client. Shown once, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// A new token: the fixed prefix and 256 random bits.
    pub fn generate() -> Self {
        Self(format!("{REFRESH_TOKEN_PREFIX}{}", random_token::<32>()))
    }

    /// Wraps what a client presented; `None` when it cannot be one of ours.
    pub fn parse(presented: &str) -> Option<Self> {
        let body = presented.strip_prefix(REFRESH_TOKEN_PREFIX)?;
        let well_formed = body.len() == 43
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(presented.to_owned()))
    }

    /// The value to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The digest the store keeps instead of the token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(sha256_hex(self.0.as_bytes()))
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(***)")
    }
}

/// SHA-256 (hex) of a secret token: what the store keeps and looks up by.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// Wraps a digest read back from a store.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not the secret, but keep logs free of anything token-shaped.
        write!(f, "TokenHash({}…)", &self.0[..self.0.len().min(8)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_round_trip_and_redact() {
        let token = RefreshToken::generate();
        assert!(token.expose().starts_with(REFRESH_TOKEN_PREFIX));
        assert_eq!(RefreshToken::parse(token.expose()), Some(token.clone()));
        assert_eq!(format!("{token:?}"), "RefreshToken(***)");
        assert_eq!(token.hash(), token.clone().hash());
    }

    #[test]
    fn malformed_refresh_tokens_are_refused() {
        assert!(RefreshToken::parse("").is_none());
        assert!(RefreshToken::parse("tsr_short").is_none());
        assert!(RefreshToken::parse(&format!("tsr_{}", "a".repeat(42) + "!")).is_none());
    }

    #[test]
    fn object_ids_are_24_hex_digits() {
        let id = new_object_id(1_700_000_000);
        assert_eq!(id.len(), 24);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_object_id(1_700_000_000));
    }
}
