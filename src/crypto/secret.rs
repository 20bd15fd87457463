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

/// Length of the family id embedded in every refresh token (24 hex digits).
const FAMILY_ID_LEN: usize = 24;
/// Length of the random (or derived) part: 256 bits as unpadded base64url.
const TOKEN_SECRET_LEN: usize = 43;

/// A raw refresh token as handed to the client. Shown once, never stored.
///
/// Shape: `tsr_` + the family id (24 hex digits, not secret) + 256 bits.
/// Carrying the family id lets every store key of a token live in its
/// family's hash slot (Redis Cluster) without a global index.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// The first token of a family: 256 random bits.
    pub fn generate(family_id: &str) -> Self {
        Self(format!(
            "{REFRESH_TOKEN_PREFIX}{family_id}{}",
            random_token::<32>()
        ))
    }

    /// The token that replaces this one on rotation, derived with the
    /// server-held key: a replay within the grace period gets the *same*
    /// successor, so a family never forks and no raw token is ever stored.
    pub fn successor(&self, key: &[u8]) -> Self {
        let mac = hmac_sha256(key, self.0.as_bytes());
        Self(format!(
            "{REFRESH_TOKEN_PREFIX}{}{}",
            self.family_id(),
            URL_SAFE_NO_PAD.encode(mac)
        ))
    }

    /// Wraps what a client presented; `None` when it cannot be one of ours.
    pub fn parse(presented: &str) -> Option<Self> {
        let body = presented.strip_prefix(REFRESH_TOKEN_PREFIX)?;
        if body.len() != FAMILY_ID_LEN + TOKEN_SECRET_LEN {
            return None;
        }
        let (family, secret) = body.split_at(FAMILY_ID_LEN);
        let well_formed = family
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(presented.to_owned()))
    }

    /// The family this token belongs to (not a secret).
    pub fn family_id(&self) -> &str {
        &self.0[REFRESH_TOKEN_PREFIX.len()..REFRESH_TOKEN_PREFIX.len() + FAMILY_ID_LEN]
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

/// Prefix of every client secret, for secret scanners. NEVER CHANGE.
pub const CLIENT_SECRET_PREFIX: &str = "tss_";

/// A new client secret: the prefix and 256 random bits. Shown once.
pub fn generate_client_secret() -> String {
    format!("{CLIENT_SECRET_PREFIX}{}", random_token::<32>())
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
        let family = new_object_id(1);
        let token = RefreshToken::generate(&family);
        assert!(token.expose().starts_with(REFRESH_TOKEN_PREFIX));
        assert_eq!(token.family_id(), family);
        assert_eq!(RefreshToken::parse(token.expose()), Some(token.clone()));
        assert_eq!(format!("{token:?}"), "RefreshToken(***)");
        assert_eq!(token.hash(), token.clone().hash());
    }

    #[test]
    fn successors_are_deterministic_and_stay_in_the_family() {
        let token = RefreshToken::generate(&new_object_id(1));
        let next = token.successor(b"server key");
        assert_eq!(next, token.successor(b"server key"));
        assert_ne!(next, token.successor(b"another key"));
        assert_eq!(next.family_id(), token.family_id());
        assert_eq!(RefreshToken::parse(next.expose()), Some(next.clone()));
    }

    #[test]
    fn malformed_refresh_tokens_are_refused() {
        assert!(RefreshToken::parse("").is_none());
        assert!(RefreshToken::parse("tsr_short").is_none());
        let good = RefreshToken::generate(&new_object_id(1));
        let bad_char = format!("{}!", &good.expose()[..good.expose().len() - 1]);
        assert!(RefreshToken::parse(&bad_char).is_none());
        let upper_family =
            good.expose()
                .replacen(good.family_id(), &good.family_id().to_uppercase(), 1);
        assert!(upper_family == good.expose() || RefreshToken::parse(&upper_family).is_none());
    }

    /// RFC 6819 §4.4.1.3, §4.5.3, §4.3.3: codes, refresh tokens and client
    /// secrets carry at least 256 random bits (32 bytes, 43 base64url chars).
    #[test]
    fn guessable_values_carry_256_random_bits() {
        let token = random_token::<32>();
        assert_eq!(token.len(), 43);
        assert_ne!(token, random_token::<32>());
        let refresh = RefreshToken::generate(&new_object_id(1));
        assert_eq!(
            refresh.expose().len(),
            REFRESH_TOKEN_PREFIX.len() + FAMILY_ID_LEN + TOKEN_SECRET_LEN
        );
        let secret = generate_client_secret();
        assert!(secret.len() >= 4 + 43, "{}", secret.len());
    }

    #[test]
    fn object_ids_are_24_hex_digits() {
        let id = new_object_id(1_700_000_000);
        assert_eq!(id.len(), 24);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_object_id(1_700_000_000));
    }
}
