//! The DPoP replay cache: each proof's `jti` is accepted once (RFC 9449
//! §11.1), remembered for as long as the proof's `iat` is acceptable.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::{Clock, SystemClock, VerifyError};

/// Remembers the proofs already seen, so that each is accepted once.
///
/// The key the kit passes is `dpop:` followed by the base64url SHA-256 of
/// `jkt ‖ " " ‖ jti`: 48 characters whatever the client sent.
///
/// [`MemoryReplay`] is the default and suits one process. Several nodes
/// behind a load balancer must share one cache, or a proof refused as a
/// replay on one node is accepted on the next. With Redis, `SET key 1 NX
/// EXAT expires_at` is exactly `first_use`:
///
/// ```ignore
/// use async_trait::async_trait;
/// use tessera_resource::{ProofReplay, VerifyError};
///
/// struct RedisReplay(redis::aio::ConnectionManager);
///
/// #[async_trait]
/// impl ProofReplay for RedisReplay {
///     async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, VerifyError> {
///         let set: Option<String> = redis::cmd("SET")
///             .arg(key).arg(1).arg("NX").arg("EXAT").arg(expires_at)
///             .query_async(&mut self.0.clone())
///             .await
///             .map_err(|_| VerifyError::Unavailable)?;
///         // "OK" when the key was set, nil when it already existed.
///         Ok(set.is_some())
///     }
/// }
/// ```
#[async_trait]
pub trait ProofReplay: Send + Sync {
    /// `Ok(true)` if `key` was never seen (it is then remembered until
    /// `expires_at`, Unix seconds), `Ok(false)` if it was;
    /// [`VerifyError::Unavailable`] if the cache cannot be reached (the
    /// request is then answered 503).
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, VerifyError>;
}

/// The replay-cache key of a proof: fixed length whatever `jkt` and `jti`
/// are, and per key, so that two clients choosing the same `jti` do not
/// collide. (A thumbprint is base64url, without spaces: the separator is
/// unambiguous.)
pub(crate) fn replay_key(jkt: &str, jti: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(jkt.as_bytes());
    hash.update(b" ");
    hash.update(jti.as_bytes());
    format!("dpop:{}", URL_SAFE_NO_PAD.encode(hash.finalize()))
}

/// An in-process [`ProofReplay`] for a single-node resource server, bounded
/// to [`capacity`](Self::capacity) entries (100 000 by default, a few MB).
///
/// Expired entries are dropped on each insert. When the cache is full of
/// live entries it fails closed: the proof is refused as if the cache were
/// unreachable (503), never let through by forgetting a live entry (an
/// eviction would let a captured proof be replayed). Size the capacity
/// above the number of proofs a node accepts within `dpop_max_age` plus
/// the leeway.
///
/// A deployment with several nodes must share one cache instead (see
/// [`ProofReplay`], e.g. Redis `SET key 1 NX EXAT`).
pub struct MemoryReplay {
    capacity: usize,
    clock: Arc<dyn Clock>,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    expiry_of: HashMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
}

impl Entries {
    fn drop_expired(&mut self, now: u64) {
        while let Some((expires_at, _)) = self.by_expiry.first()
            && *expires_at <= now
        {
            self.evict_first();
        }
    }

    fn evict_first(&mut self) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            self.expiry_of.remove(&key);
        }
    }

    fn insert(&mut self, key: &str, expires_at: u64) {
        self.expiry_of.insert(key.to_owned(), expires_at);
        self.by_expiry.insert((expires_at, key.to_owned()));
    }
}

impl MemoryReplay {
    /// The default capacity.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty cache of [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY)
    /// entries, on the system clock.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty cache of at most `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: Arc::new(SystemClock),
            entries: Mutex::default(),
        }
    }

    /// The clock expiries are judged by (tests move it).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries are kept now, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.lock().expiry_of.len()
    }

    /// Whether no entry is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The entries stay consistent across a panic elsewhere: no
        // operation on them can panic half-way.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.now()).unwrap_or(0)
    }
}

impl Default for MemoryReplay {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplay")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ProofReplay for MemoryReplay {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, VerifyError> {
        let now = self.now();
        let mut entries = self.lock();
        entries.drop_expired(now);
        if entries.expiry_of.contains_key(key) {
            return Ok(false);
        }
        if expires_at <= now {
            // Already past its window: nothing to remember it for.
            return Ok(true);
        }
        if entries.expiry_of.len() >= self.capacity {
            return Err(VerifyError::Unavailable);
        }
        entries.insert(key, expires_at);
        Ok(true)
    }
}
