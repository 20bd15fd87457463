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

    /// Whether one of the next `steps` tokens of this token's successor
    /// chain has one of the short digests `known` (a family's current token
    /// and its checkpoints): then this token is an ancestor of the family's
    /// current token. Every comparison is constant-time. Bytes only, no
    /// allocation per step: at 256 steps this costs about as much CPU as
    /// one RSA signature.
    pub fn is_ancestor_of(&self, key: &[u8], known: &[ShortDigest], steps: u64) -> bool {
        #[allow(clippy::expect_used)]
        let keyed = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        let mut token = self.0.clone().into_bytes();
        let head = REFRESH_TOKEN_PREFIX.len() + FAMILY_ID_LEN;
        for _ in 0..steps {
            let mut mac = keyed.clone();
            mac.update(&token);
            let mac: [u8; 32] = mac.finalize().into_bytes().into();
            token.truncate(head);
            token.resize(head + TOKEN_SECRET_LEN, 0);
            // 32 bytes are always 43 base64url characters: the slice fits.
            if URL_SAFE_NO_PAD
                .encode_slice(mac, &mut token[head..])
                .is_err()
            {
                return false;
            }
            let digest = Sha256::digest(&token);
            let digest = &digest[..SHORT_DIGEST_LEN];
            if known.iter().any(|known| constant_time_eq(digest, &known.0)) {
                return true;
            }
        }
        false
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(***)")
    }
}

/// Bytes of a [`ShortDigest`].
const SHORT_DIGEST_LEN: usize = 16;

/// The first 16 bytes of a token's SHA-256, raw: what the Redis store keeps
/// as a family's current token (128 bits are plenty to recognise a token
/// the server derived itself). Its `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShortDigest([u8; SHORT_DIGEST_LEN]);

impl ShortDigest {
    /// Wraps 16 bytes read back from a store; `None` for any other length.
    pub fn from_stored(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time equality (the digest of a live token is as good as a
    /// secret to whoever can read it back).
    pub fn matches(&self, other: &ShortDigest) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for ShortDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShortDigest(***)")
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

    /// Its first 16 bytes, raw; `None` if it is not a hex SHA-256 (a value
    /// read back from a store that was not one of ours).
    pub fn short(&self) -> Option<ShortDigest> {
        let mut bytes = [0u8; SHORT_DIGEST_LEN];
        hex::decode_to_slice(self.0.get(..2 * SHORT_DIGEST_LEN)?, &mut bytes).ok()?;
        Some(ShortDigest(bytes))
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
    fn ancestors_are_found_within_the_steps_and_no_further() {
        let key = b"server key";
        let first = RefreshToken::generate(&new_object_id(1));
        let mut chain = vec![first.clone()];
        for _ in 0..5 {
            let next = chain[chain.len() - 1].successor(key);
            chain.push(next);
        }
        let current = chain[5].hash().short().unwrap();
        let known = [current];
        assert!(first.is_ancestor_of(key, &known, 5));
        assert!(first.is_ancestor_of(key, &known, 256));
        assert!(!first.is_ancestor_of(key, &known, 4), "too far back");
        assert!(chain[3].is_ancestor_of(key, &known, 2));
        assert!(
            !chain[5].is_ancestor_of(key, &known, 256),
            "not its own ancestor"
        );
        assert!(!first.is_ancestor_of(b"another key", &known, 256));
        let stranger = RefreshToken::generate(first.family_id());
        assert!(!stranger.is_ancestor_of(key, &known, 256));
        // A checkpoint two steps on brings the first token within reach.
        let checkpoint = chain[2].hash().short().unwrap();
        assert!(first.is_ancestor_of(key, &[checkpoint, current], 2));
        assert!(!first.is_ancestor_of(key, &[checkpoint, current], 1));
        assert!(!stranger.is_ancestor_of(key, &[checkpoint, current], 256));
        assert_eq!(
            current.as_bytes(),
            &Sha256::digest(chain[5].expose().as_bytes())[..16]
        );
        assert_eq!(format!("{current:?}"), "ShortDigest(***)");
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
