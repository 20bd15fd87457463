//! The server-held HMAC key, kept in the keys directory beside the signing
//! keys.

use std::fs;
use std::path::Path;

use super::dir::{ensure_private_dir, write_private};
use super::{KeyDir, KeyError};
use crate::crypto::secret::random_bytes;

impl KeyDir {
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
}
