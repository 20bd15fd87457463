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

/// The parsed private half of a key.
enum Signer {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One key, parsed once, ready to sign.
pub struct SigningKey {
    pub meta: KeyMeta,
    signer: Arc<Signer>,
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
        match self.signer.as_ref() {
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
        (thumbprint(&signer) == meta.kid).then(|| Self {
            meta,
            signer: Arc::new(signer),
            jwk,
        })
    }

    /// The same parsed key with updated lifecycle metadata.
    fn with_meta(&self, meta: KeyMeta) -> Self {
        Self {
            meta,
            signer: self.signer.clone(),
            jwk: self.jwk.clone(),
        }
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
            .map(|meta| self.load_one(meta))
            .collect()
    }

    /// Reads and parses the private key `meta` describes.
    fn load_one(&self, meta: KeyMeta) -> Result<SigningKey, KeyError> {
        let path = self.path.join(format!("{}.pem", meta.kid));
        let text = fs::read_to_string(&path).map_err(io_error(&path))?;
        let der = pem::parse(text)
            .map_err(|_| KeyError::Invalid(path.clone()))?
            .into_contents();
        SigningKey::from_pkcs8(meta, &der).ok_or(KeyError::Invalid(path))
    }

    /// Pre-published rotation: a new key of `alg` that is published at once
    /// and signs from `now + prepublish`; every key not yet retired retires
    /// at that moment (and stays published while its tokens live).
    pub fn rotate(
        &self,
        alg: SigningAlg,
        now: UnixTime,
        prepublish: u64,
    ) -> Result<KeyMeta, KeyError> {
        let activate_at = now.saturating_add(prepublish as i64);
        let older = self.list()?;
        let new = self.generate(alg, now, activate_at)?;
        for mut meta in older.into_iter().filter(|m| m.retired_at.is_none()) {
            meta.retired_at = Some(activate_at.max(meta.activate_at));
            self.write_meta(&meta)?;
        }
        Ok(new)
    }

    /// Stops `kid` signing at `now`. It stays published while tokens it
    /// signed live, unless `unpublish` (a compromised key): then its files
    /// are deleted and tokens it signed stop verifying at once. Refused when
    /// no other key could sign.
    pub fn retire(&self, kid: &str, now: UnixTime, unpublish: bool) -> Result<KeyMeta, KeyError> {
        let metas = self.list()?;
        let mut meta = metas
            .iter()
            .find(|m| m.kid == kid)
            .cloned()
            .ok_or_else(|| KeyError::UnknownKid(kid.to_owned()))?;
        let another_signs = metas.iter().any(|m| m.kid != kid && m.signs_at(now));
        if !another_signs {
            return Err(KeyError::LastKey);
        }
        meta.retired_at = Some(meta.retired_at.map_or(now, |at| at.min(now)));
        if unpublish {
            for ext in ["json", "pem"] {
                let path = self.path.join(format!("{kid}.{ext}"));
                fs::remove_file(&path).map_err(io_error(&path))?;
            }
        } else {
            self.write_meta(&meta)?;
        }
        Ok(meta)
    }

    /// The server-held HMAC key (refresh-token successors, OTP digests,
    /// cookie keys): created on first use as `token-secret` (mode 0600) so
    /// every node that shares the keys directory derives the same values.
    /// Nodes starting together on an empty directory agree: the first to
    /// link its file wins and the others read it.
    pub fn token_secret(&self) -> Result<Vec<u8>, KeyError> {
        let path = self.path.join("token-secret");
        let read = |path: &Path| -> Result<Option<Vec<u8>>, KeyError> {
            match fs::read_to_string(path) {
                Ok(text) => hex::decode(text.trim())
                    .map(Some)
                    .map_err(|_| KeyError::Invalid(path.to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(KeyError::Io {
                    path: path.to_owned(),
                    source,
                }),
            }
        };
        if let Some(secret) = read(&path)? {
            return Ok(secret);
        }
        ensure_private_dir(&self.path)?;
        let secret = random_bytes::<32>();
        let tmp = path.with_extension(format!("tmp{}", hex::encode(random_bytes::<4>())));
        write_private(&tmp, hex::encode(secret).as_bytes())?;
        // A hard link never replaces an existing file, unlike a rename.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(secret.to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                read(&path)?.ok_or(KeyError::Invalid(path))
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

/// The keys in memory at one moment: the one that signs now and every one
/// that is published (pending, active, or retired less than a token
/// lifetime ago).
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    active: Arc<SigningKey>,
    jwks: serde_json::Value,
    /// The JWKS serialized once: `/.well-known/jwks.json` serves these bytes.
    jwks_json: axum::body::Bytes,
    decoding: crate::resource::KeyMap,
}

impl KeySet {
    /// The set as it stands at `now`. The newest key that is activated and
    /// not yet retired signs; a retired key stays published for
    /// `retired_window` seconds (the longest a token it signed can live).
    pub fn new(
        keys: Vec<SigningKey>,
        now: UnixTime,
        retired_window: u64,
    ) -> Result<Self, KeyError> {
        let keys: Vec<Arc<SigningKey>> = keys
            .into_iter()
            .filter(|k| k.meta.is_published(now, retired_window))
            .map(Arc::new)
            .collect();
        let active = keys
            .iter()
            .filter(|k| k.meta.signs_at(now))
            .max_by_key(|k| (k.meta.activate_at, k.meta.created_at))
            .cloned()
            .ok_or(KeyError::NoActiveKey)?;
        let jwks = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        let decoding = serde_json::from_value(jwks.clone())
            .map(|set| crate::resource::decoding_keys(&set))
            .unwrap_or_default();
        let jwks_json = axum::body::Bytes::from(jwks.to_string());
        Ok(Self {
            keys,
            active,
            jwks,
            jwks_json,
            decoding,
        })
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &Arc<SigningKey> {
        &self.active
    }

    /// A published key by `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|k| k.meta.kid == kid)
    }

    /// The verification key for `kid`, as the resource layer wants it.
    pub fn decoding_key(
        &self,
        kid: &str,
    ) -> Option<(jsonwebtoken::Algorithm, Arc<jsonwebtoken::DecodingKey>)> {
        self.decoding.get(kid).cloned()
    }

    /// The JWK Set document.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// The JWK Set document, serialized.
    pub fn jwks_json(&self) -> axum::body::Bytes {
        self.jwks_json.clone()
    }

    /// The `kid`s in the JWKS.
    pub fn published(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid())
    }
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

/// The live keys of a running node: a [`KeySet`] swapped atomically when
/// the keys directory changes or a pending key's time comes, so a rotation
/// made on any node sharing the directory reaches every node without a
/// restart. Readers never wait on a reload.
pub struct KeyRing {
    dir: KeyDir,
    retired_window: u64,
    current: arc_swap::ArcSwap<KeySet>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Loads `dir`, generating a first key of `alg` when it holds none.
    /// Returns the ring and the key generated, if any.
    pub fn load_or_init(
        dir: KeyDir,
        alg: SigningAlg,
        now: UnixTime,
        retired_window: u64,
    ) -> Result<(Self, Option<KeyMeta>), KeyError> {
        let mut generated = None;
        if dir.list()?.is_empty() {
            generated = Some(dir.generate(alg, now, now)?);
        }
        let set = KeySet::new(dir.load()?, now, retired_window)?;
        let ring = Self {
            dir,
            retired_window,
            current: arc_swap::ArcSwap::from_pointee(set),
        };
        Ok((ring, generated))
    }

    /// The set as of the last reload.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Re-reads the directory (parsing only keys not already in memory) and
    /// re-decides which key signs at `now`. On any error the current set
    /// stays in place. Returns the new active `kid` when it changed.
    pub fn reload(&self, now: UnixTime) -> Result<Option<String>, KeyError> {
        let old = self.current();
        let keys = self
            .dir
            .list()?
            .into_iter()
            .filter(|meta| meta.is_published(now, self.retired_window))
            .map(|meta| match old.get(&meta.kid) {
                Some(known) => Ok(known.with_meta(meta)),
                None => self.dir.load_one(meta),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let set = KeySet::new(keys, now, self.retired_window)?;
        let changed =
            (set.active().kid() != old.active().kid()).then(|| set.active().kid().to_owned());
        self.current.store(Arc::new(set));
        Ok(changed)
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
        let set = KeySet::new(loaded, 200, 60).expect("set");
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
        let set = KeySet::new(keys.load().expect("load"), 10, 60).expect("set");
        assert_eq!(set.active().kid(), current.kid);
        assert_eq!(set.jwks()["keys"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn rotation_prepublishes_then_switches_then_unpublishes_the_old_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path());
        let window = 100;
        let (ring, first) =
            KeyRing::load_or_init(keys.clone(), SigningAlg::EdDSA, 1000, window).expect("ring");
        let first = first.expect("first key generated").kid;
        let next = keys
            .rotate(SigningAlg::ES256, 1001, 49)
            .expect("rotate")
            .kid;
        let published = |ring: &KeyRing| -> Vec<String> {
            ring.current().published().map(str::to_owned).collect()
        };

        // Pre-publication: both in the JWKS, the old one still signs.
        assert_eq!(ring.reload(1010).expect("reload"), None);
        assert_eq!(ring.current().active().kid(), first);
        assert_eq!(published(&ring), [first.clone(), next.clone()]);
        assert!(ring.current().decoding_key(&next).is_some());

        // Activation: the new key signs, the old one stays published.
        assert_eq!(ring.reload(1050).expect("reload"), Some(next.clone()));
        assert_eq!(published(&ring), [first.clone(), next.clone()]);

        // Once every token the old key signed has expired, it is gone.
        ring.reload(1050 + window as i64).expect("reload");
        assert_eq!(published(&ring), [next]);
        assert!(ring.current().decoding_key(&first).is_none());
    }

    #[test]
    fn nodes_starting_together_agree_on_the_token_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| KeyDir::new(dir.path()).token_secret().expect("secret")))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(secrets.windows(2).all(|w| w[0] == w[1]));
        let files = fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(files, 1, "no temporary files left behind");
    }

    #[test]
    fn the_last_signing_key_cannot_be_retired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path());
        let only = keys.generate(SigningAlg::EdDSA, 1, 1).expect("generate");
        assert!(matches!(
            keys.retire(&only.kid, 10, false),
            Err(KeyError::LastKey)
        ));
        let next = keys.rotate(SigningAlg::EdDSA, 10, 0).expect("rotate");
        let retired = keys.retire(&only.kid, 10, true).expect("retire");
        assert_eq!(retired.retired_at, Some(10));
        let left: Vec<String> = keys
            .list()
            .expect("list")
            .into_iter()
            .map(|m| m.kid)
            .collect();
        assert_eq!(left, [next.kid]);
        assert!(matches!(
            keys.retire("no-such-kid", 10, false),
            Err(KeyError::UnknownKid(_))
        ));
    }
}
