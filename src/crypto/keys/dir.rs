//! The keys directory on disk: where keys are generated, listed, loaded,
//! rotated and retired. Every file is written private (mode 0600, in a 0700
//! directory) through a temporary file and a rename.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::signer::{SigningKey, generate_pkcs8, parse_signer, thumbprint};
use super::{KeyError, KeyMeta, io_error};
use crate::clock::UnixTime;
use crate::config::SigningAlg;
use crate::crypto::secret::random_bytes;

/// The keys directory: where keys are created, listed and loaded from.
#[derive(Clone, Debug)]
pub struct KeyDir {
    pub(super) path: PathBuf,
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
    pub(super) fn load_one(&self, meta: KeyMeta) -> Result<SigningKey, KeyError> {
        let path = self.path.join(format!("{}.pem", meta.kid));
        let text = fs::read_to_string(&path).map_err(io_error(&path))?;
        let der = pem::parse(text)
            .map_err(|_| KeyError::Invalid(path.clone()))?
            .into_contents();
        SigningKey::from_pkcs8(meta, &der).ok_or(KeyError::Invalid(path))
    }

    /// Pre-published rotation: a new key of `alg` that is published at once
    /// and signs from `now + prepublish`; every key not yet retired retires
    /// at that moment (and stays published while its tokens live), except,
    /// when `alg` is not RS256, the newest RS256 key, which goes on signing
    /// ID tokens.
    pub fn rotate(
        &self,
        alg: SigningAlg,
        now: UnixTime,
        prepublish: u64,
    ) -> Result<KeyMeta, KeyError> {
        let activate_at = now.saturating_add(prepublish as i64);
        let older = self.list()?;
        let new = self.generate(alg, now, activate_at)?;
        // Rotating to ES256 or EdDSA keeps the newest RS256 key signing: ID
        // tokens must be RS256 (OpenID Discovery §3) whatever access tokens use.
        let id_token_key = (alg != SigningAlg::RS256)
            .then(|| {
                older
                    .iter()
                    .filter(|m| m.alg == SigningAlg::RS256 && m.retired_at.is_none())
                    .max_by_key(|m| (m.activate_at, m.created_at))
                    .map(|m| m.kid.clone())
            })
            .flatten();
        for mut meta in older
            .into_iter()
            .filter(|m| m.retired_at.is_none() && Some(&m.kid) != id_token_key.as_ref())
        {
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

    fn write_meta(&self, meta: &KeyMeta) -> Result<(), KeyError> {
        let path = self.path.join(format!("{}.json", meta.kid));
        let text = serde_json::to_string_pretty(meta).map_err(|_| KeyError::Generation)?;
        write_private(&path, text.as_bytes())
    }
}

pub(super) fn ensure_private_dir(path: &Path) -> Result<(), KeyError> {
    fs::create_dir_all(path).map_err(io_error(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_error(path))?;
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key.
pub(super) fn write_private(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
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
