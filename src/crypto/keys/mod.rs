//! Signing keys: generated and stored in the keys directory, kept parsed in
//! memory (re-parsing an RSA key per token costs more than half of the
//! signing budget), published as a JWK Set.
//!
//! On disk each key is two files: `<kid>.pem` (PKCS#8, mode 0600) and
//! `<kid>.json` (algorithm and lifecycle). The `kid` is the key's RFC 7638
//! thumbprint, so it never collides and never needs coordination.
//!
//! - `dir.rs`: the keys directory ([`KeyDir`]): generate, list, load, rotate,
//!   retire;
//! - `signer.rs`: a parsed key ([`SigningKey`]), its JWK and thumbprint;
//! - `ring.rs`: the keys in memory ([`KeySet`]) and the live, reloading
//!   [`KeyRing`];
//! - `token_secret.rs`: the server-held HMAC key beside the keys.

mod dir;
mod ring;
mod signer;
#[cfg(test)]
mod tests;
mod token_secret;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::config::SigningAlg;
use crate::crypto::jwk::JwkError;

pub use dir::KeyDir;
pub use ring::{KeyRing, KeySet};
pub use signer::SigningKey;

/// Errors reading, parsing or writing keys. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keys directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {0} is not a valid key")]
    Invalid(PathBuf),
    #[error("key generation failed")]
    Generation,
    #[error("signing failed")]
    Signing,
    #[error("no usable signing key in the keys directory")]
    NoActiveKey,
    /// A key parsed for signing, but its public JWK gives no verification
    /// key: every token it signed would be refused.
    #[error("key {kid}: its public JWK cannot verify tokens: {why}")]
    Unverifiable { kid: String, why: JwkError },
    #[error("no key with kid {0}")]
    UnknownKid(String),
    #[error("no other key could sign: run `tessera keys rotate --prepublish 0` first")]
    LastKey,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What is stored beside each private key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyMeta {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: UnixTime,
    /// From when the key signs; before that it is only published.
    pub activate_at: UnixTime,
    /// When the key stopped signing; it stays published until tokens it signed expire.
    pub retired_at: Option<UnixTime>,
}

impl KeyMeta {
    /// Whether the key signs new tokens at `now`.
    pub fn signs_at(&self, now: UnixTime) -> bool {
        self.activate_at <= now && self.retired_at.is_none_or(|at| at > now)
    }

    /// Whether the key is in the JWKS at `now`.
    pub fn is_published(&self, now: UnixTime, retired_window: u64) -> bool {
        self.retired_at
            .is_none_or(|at| at.saturating_add(retired_window as i64) > now)
    }

    /// A word for `tessera keys list`.
    pub fn state(
        &self,
        now: UnixTime,
        retired_window: u64,
        active_kid: Option<&str>,
    ) -> &'static str {
        if active_kid == Some(self.kid.as_str()) {
            "active"
        } else if self.activate_at > now {
            "pending"
        } else if !self.is_published(now, retired_window) {
            "expired"
        } else if self.retired_at.is_some_and(|at| at <= now) {
            "retired"
        } else {
            "published"
        }
    }
}
