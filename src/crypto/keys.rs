//! Signing keys: generated and stored in the keys directory, kept parsed in
//! memory (re-parsing an RSA key per token costs more than half of the
//! signing budget), published as a JWK Set.
//!
//! On disk each key is two files: `<kid>.pem` (PKCS#8, mode 0600) and
//! `<kid>.json` (algorithm and lifecycle). The `kid` is the key's RFC 7638
//! thumbprint, so it never collides and never needs coordination.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::UnixTime;
use crate::config::SigningAlg;
use crate::crypto::secret::{random_bytes, sha256_hex};

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

/// The parsed private half of a key.
enum Signer {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One key, parsed once, ready to sign.
pub struct SigningKey {
    pub meta: KeyMeta,
    signer: Signer,
    /// The public JWK (with `kid`, `alg`, `use`).
    pub jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.meta.kid)
            .field("alg", &self.meta.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.meta.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.meta.alg
    }

    /// The JWS signature over `message` (`base64url(header).base64url(payload)`).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(|_| KeyError::Signing)?;
                Ok(signature)
            }
            Signer::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Signing),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// Parses a PKCS#8 DER private key of `alg`.
    fn from_pkcs8(meta: KeyMeta, der: &[u8]) -> Option<Self> {
        let signer = parse_signer(meta.alg, der)?;
        let jwk = public_jwk(&signer, &meta);
        // A kid that is not the thumbprint means the files were mixed up.
        (thumbprint(&signer) == meta.kid).then_some(Self { meta, signer, jwk })
    }
}

/// The members RFC 7638 hashes, in lexicographic order.
fn thumbprint_members(signer: &Signer) -> serde_json::Value {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match signer {
        Signer::Rsa(pair) => {
            let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            json!({"e": b64(&components.e), "kty": "RSA", "n": b64(&components.n)})
        }
        Signer::Ecdsa(pair) => {
            // Uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            json!({"crv": "P-256", "kty": "EC", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
        }
        Signer::Ed25519(pair) => {
            json!({"crv": "Ed25519", "kty": "OKP", "x": b64(pair.public_key().as_ref())})
        }
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url).
fn thumbprint(signer: &Signer) -> String {
    // serde_json writes object keys sorted (no preserve_order feature), no spaces.
    let canonical = thumbprint_members(signer).to_string();
    let digest = hex::decode(sha256_hex(canonical.as_bytes())).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(digest)
}

fn public_jwk(signer: &Signer, meta: &KeyMeta) -> serde_json::Value {
    let mut jwk = thumbprint_members(signer);
    jwk["kid"] = json!(meta.kid);
    jwk["alg"] = json!(meta.alg.as_str());
    jwk["use"] = json!("sig");
    jwk
}

fn generate_pkcs8(alg: SigningAlg) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let der = match alg {
        SigningAlg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| KeyError::Generation)?;
            let der: Pkcs8V1Der = pair.as_der().map_err(|_| KeyError::Generation)?;
            der.as_ref().to_vec()
        }
        SigningAlg::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec()
        }
        SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::Generation)?
            .as_ref()
            .to_vec(),
    };
    Ok(der)
}

/// The keys directory: where keys are created, listed and loaded from.
#[derive(Clone, Debug)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Generates a key, writes it (private file mode 0600) and returns its metadata.
    pub fn generate(
        &self,
        alg: SigningAlg,
        now: UnixTime,
        activate_at: UnixTime,
    ) -> Result<KeyMeta, KeyError> {
        ensure_private_dir(&self.path)?;
        let der = generate_pkcs8(alg)?;
        let signer = parse_signer(alg, &der).ok_or(KeyError::Generation)?;
        let meta = KeyMeta {
            kid: thumbprint(&signer),
            alg,
            created_at: now,
            activate_at,
            retired_at: None,
        };
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
        write_private(&self.path.join(format!("{}.pem", meta.kid)), pem.as_bytes())?;
        self.write_meta(&meta)?;
        Ok(meta)
    }

    /// Every key's metadata, oldest first.
    pub fn list(&self) -> Result<Vec<KeyMeta>, KeyError> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let mut metas = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(io_error(&self.path))? {
            let path = entry.map_err(io_error(&self.path))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = fs::read_to_string(&path).map_err(io_error(&path))?;
                let meta: KeyMeta =
                    serde_json::from_str(&text).map_err(|_| KeyError::Invalid(path.clone()))?;
                metas.push(meta);
            }
        }
        metas.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        Ok(metas)
    }

    /// Loads and parses every key.
    pub fn load(&self) -> Result<Vec<SigningKey>, KeyError> {
        self.list()?
            .into_iter()
            .map(|meta| {
                let path = self.path.join(format!("{}.pem", meta.kid));
                let text = fs::read_to_string(&path).map_err(io_error(&path))?;
                let der = pem::parse(text)
                    .map_err(|_| KeyError::Invalid(path.clone()))?
                    .into_contents();
                SigningKey::from_pkcs8(meta, &der).ok_or(KeyError::Invalid(path))
            })
            .collect()
    }

    /// The server-held HMAC key (refresh-token successors, OTP digests):
    /// created on first use as `token-secret` (mode 0600) so every node that
    /// shares the keys directory derives the same values.
    pub fn token_secret(&self) -> Result<Vec<u8>, KeyError> {
        let path = self.path.join("token-secret");
        match fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim()).map_err(|_| KeyError::Invalid(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ensure_private_dir(&self.path)?;
                let secret = random_bytes::<32>();
                write_private(&path, hex::encode(secret).as_bytes())?;
                Ok(secret.to_vec())
            }
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    fn write_meta(&self, meta: &KeyMeta) -> Result<(), KeyError> {
        let path = self.path.join(format!("{}.json", meta.kid));
        let text = serde_json::to_string_pretty(meta).map_err(|_| KeyError::Generation)?;
        write_private(&path, text.as_bytes())
    }
}

fn parse_signer(alg: SigningAlg, der: &[u8]) -> Option<Signer> {
    Some(match alg {
        SigningAlg::RS256 => Signer::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(der).ok()?),
        SigningAlg::ES256 => Signer::Ecdsa(
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der).ok()?,
        ),
        SigningAlg::EdDSA => Signer::Ed25519(Ed25519KeyPair::from_pkcs8(der).ok()?),
    })
}

fn ensure_private_dir(path: &Path) -> Result<(), KeyError> {
    fs::create_dir_all(path).map_err(io_error(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_error(path))?;
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let tmp = path.with_extension(format!("tmp{}", hex::encode(random_bytes::<4>())));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
    file.write_all(contents).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

/// The keys in memory: the one that signs now and every one that is published.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    active: Arc<SigningKey>,
    jwks: serde_json::Value,
}

impl KeySet {
    /// Chooses the newest key that is active at `now` and not retired.
    pub fn new(keys: Vec<SigningKey>, now: UnixTime) -> Result<Self, KeyError> {
        let keys: Vec<Arc<SigningKey>> = keys.into_iter().map(Arc::new).collect();
        let active = keys
            .iter()
            .filter(|k| k.meta.activate_at <= now && k.meta.retired_at.is_none())
            .max_by_key(|k| (k.meta.activate_at, k.meta.created_at))
            .cloned()
            .ok_or(KeyError::NoActiveKey)?;
        let jwks = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        Ok(Self { keys, active, jwks })
    }

    /// Loads `dir`, generating a first key of `alg` when it holds none.
    /// Returns the set and whether a key was generated.
    pub fn load_or_init(
        dir: &KeyDir,
        alg: SigningAlg,
        now: UnixTime,
    ) -> Result<(Self, Option<KeyMeta>), KeyError> {
        let mut generated = None;
        if dir.list()?.is_empty() {
            generated = Some(dir.generate(alg, now, now)?);
        }
        Ok((Self::new(dir.load()?, now)?, generated))
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &Arc<SigningKey> {
        &self.active
    }

    /// A published key by `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|k| k.meta.kid == kid)
    }

    /// The JWK Set document.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_and_sign_every_algorithm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path());
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let meta = keys.generate(alg, 100, 100).expect("generate");
            assert_eq!(meta.kid.len(), 43, "SHA-256 thumbprint, base64url");
        }
        let loaded = keys.load().expect("load");
        assert_eq!(loaded.len(), 3);
        for key in &loaded {
            assert!(!key.sign(b"message").expect("sign").is_empty());
            assert_eq!(key.jwk["use"], "sig");
        }
        let set = KeySet::new(loaded, 200).expect("set");
        assert_eq!(set.jwks()["keys"].as_array().map(Vec::len), Some(3));
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = KeyDir::new(dir.path())
            .generate(SigningAlg::EdDSA, 1, 1)
            .expect("generate");
        let mode = fs::metadata(dir.path().join(format!("{}.pem", meta.kid)))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_future_key_is_published_but_does_not_sign() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path());
        let current = keys.generate(SigningAlg::EdDSA, 1, 1).expect("generate");
        keys.generate(SigningAlg::EdDSA, 2, 1000).expect("generate");
        let set = KeySet::new(keys.load().expect("load"), 10).expect("set");
        assert_eq!(set.active().kid(), current.kid);
        assert_eq!(set.jwks()["keys"].as_array().map(Vec::len), Some(2));
    }
}
