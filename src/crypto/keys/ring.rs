//! The keys in memory: the set published at one moment ([`KeySet`]) and the
//! live ring a running node swaps atomically on reload ([`KeyRing`]).

use std::sync::Arc;

use serde_json::json;

use super::{KeyDir, KeyError, KeyMeta, SigningKey};
use crate::clock::UnixTime;
use crate::config::SigningAlg;
use crate::crypto::jwk::{KeyMap, decoding_key_of};

/// The keys in memory at one moment: the one that signs now and every one
/// that is published (pending, active, or retired less than a token
/// lifetime ago).
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    active: Arc<SigningKey>,
    /// The newest signing RS256 key, else `active`.
    id_key: Arc<SigningKey>,
    jwks: serde_json::Value,
    /// The JWKS serialized once (the bytes `/.well-known/jwks.json` serves).
    jwks_json: bytes::Bytes,
    /// The verification key of every published key, by `kid`.
    decoding: KeyMap,
}

impl KeySet {
    /// The set as it stands at `now`. The newest key that is activated and
    /// not yet retired signs; a retired key stays published for
    /// `retired_window` seconds (the longest a token it signed can live).
    /// A published key whose JWK cannot verify is an error: tokens it
    /// signed would be refused.
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
        let id_key = keys
            .iter()
            .filter(|k| k.meta.alg == SigningAlg::RS256 && k.meta.signs_at(now))
            .max_by_key(|k| (k.meta.activate_at, k.meta.created_at))
            .cloned()
            .unwrap_or_else(|| active.clone());
        let jwks = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        let decoding = keys
            .iter()
            .map(|k| {
                decoding_key_of(&k.jwk).map_err(|why| KeyError::Unverifiable {
                    kid: k.kid().to_owned(),
                    why,
                })
            })
            .collect::<Result<KeyMap, _>>()?;
        let jwks_json = bytes::Bytes::from(jwks.to_string());
        Ok(Self {
            keys,
            active,
            id_key,
            jwks,
            jwks_json,
            decoding,
        })
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &Arc<SigningKey> {
        &self.active
    }

    /// The key that signs ID tokens: the newest signing RS256 key (OpenID
    /// Discovery §3: RS256 must be supported), else the active key.
    pub fn id_token_key(&self) -> &Arc<SigningKey> {
        &self.id_key
    }

    /// The algorithms ID tokens may be signed with (for Discovery).
    pub fn id_token_algs(&self) -> Vec<&'static str> {
        let mut algs = vec![SigningAlg::RS256.as_str()];
        for key in &self.keys {
            if !algs.contains(&key.alg().as_str()) {
                algs.push(key.alg().as_str());
            }
        }
        algs
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
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.jwks_json.clone()
    }

    /// The `kid`s in the JWKS.
    pub fn published(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid())
    }
}

/// A directory whose keys signing now include no RS256 key (one made before
/// ID tokens existed, with ES256 or EdDSA) gets one for ID tokens. It is
/// dated just before the key that signs access tokens, so that one stays
/// the newest and keeps signing them.
fn ensure_id_token_key(dir: &KeyDir, now: UnixTime) -> Result<(), KeyError> {
    let metas = dir.list()?;
    let signing = || metas.iter().filter(|m| m.signs_at(now));
    if signing().any(|m| m.alg == SigningAlg::RS256) {
        return Ok(());
    }
    let Some(active) = signing().max_by_key(|m| (m.activate_at, m.created_at)) else {
        return Ok(());
    };
    let meta = dir.generate(SigningAlg::RS256, active.created_at - 1, active.activate_at)?;
    tracing::info!(kid = %meta.kid, "generated an RS256 key for ID tokens");
    Ok(())
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
            if alg != SigningAlg::RS256 {
                // ID tokens need an RS256 key whatever signs access tokens
                // (OpenID Discovery §3); made a second older, so the key of
                // the configured algorithm is the newest and signs those.
                dir.generate(SigningAlg::RS256, now - 1, now - 1)?;
            }
            generated = Some(dir.generate(alg, now, now)?);
        } else {
            ensure_id_token_key(&dir, now)?;
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
