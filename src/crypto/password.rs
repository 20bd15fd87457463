//! bcrypt, always on blocking threads and never more at once than there are
//! cores, so that logins cannot starve the async workers; and never more
//! waiting than a bounded queue, so that a flood is answered "busy" at once
//! instead of piling up unbounded latency for everyone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore};

/// The smallest and largest password in bytes. bcrypt ignores what follows
/// byte 72, so longer passwords are refused instead of silently truncated.
pub const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=72;

/// Why the hasher did not answer.
#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    /// Every core is busy and the queue is full: retry in a moment (503).
    #[error("password hasher busy")]
    Busy,
    /// A panicked or cancelled task.
    #[error("password hasher failed")]
    Failed,
}

/// Hashes and verifies passwords at the configured cost.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// Hashes running or waiting, and how many of those may exist at once.
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
    /// Nanoseconds one verify at the configured cost takes (a moving
    /// average), to pad verifies of cheaper legacy hashes to the same time.
    verify_nanos: Arc<AtomicU64>,
    /// A hash of a random password, verified against when an email is
    /// unknown so that login takes the same time either way.
    dummy: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    /// A hasher at `cost` that runs one hash per core and lets at most
    /// `queue` more wait.
    pub fn new(cost: u32, queue: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            cost,
            permits: Arc::new(Semaphore::new(cores)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: cores + queue,
            verify_nanos: Arc::new(AtomicU64::new(0)),
            dummy: Arc::new(OnceCell::new()),
        }
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// bcrypt hash of `password` at the configured cost.
    pub async fn hash(&self, password: &str) -> Result<String, HasherError> {
        let password = password.to_owned();
        let cost = self.cost;
        self.run(move || bcrypt::hash(password, cost).map_err(|_| HasherError::Failed))
            .await
    }

    /// Whether `password` matches `hash`. A malformed stored hash is a mismatch.
    ///
    /// A mismatch against a hash cheaper than the configured cost (migrated
    /// from a service that used cost 10, say) is padded to the time of a
    /// verify at the configured cost, so that a wrong password for an
    /// existing account takes as long as an unknown email (which verifies
    /// against a dummy hash at the configured cost).
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, HasherError> {
        let password = password.to_owned();
        let hash = normalise_prefix(hash);
        let at_cost = stored_cost(&hash) == Some(self.cost);
        let (matched, took) = self
            .run(move || {
                let start = Instant::now();
                let matched = bcrypt::verify(password, &hash).unwrap_or(false);
                Ok((matched, start.elapsed()))
            })
            .await?;
        if at_cost {
            self.record_verify_time(took);
        }
        // Any mismatch not at the configured cost (a cheaper legacy hash, or
        // one that is not bcrypt at all) takes the time of one at cost.
        if !at_cost && !matched {
            let typical = Duration::from_nanos(self.verify_nanos.load(Ordering::Relaxed));
            if let Some(rest) = typical.checked_sub(took) {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(matched)
    }

    /// Folds one verify time at the configured cost into the moving average.
    fn record_verify_time(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .verify_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    (old * 7 + sample) / 8
                })
            });
    }

    /// Spends the time of one verify and always answers "no match".
    pub async fn verify_dummy(&self, password: &str) -> Result<(), HasherError> {
        let dummy = self
            .dummy
            .get_or_try_init(|| {
                let this = self.clone();
                async move {
                    let password = crate::crypto::secret::random_token::<16>();
                    this.hash(&password).await
                }
            })
            .await?
            .clone();
        self.verify(password, &dummy).await.map(|_| ())
    }

    /// Starts computing the dummy hash in the background so the first
    /// unknown-email login is not slower than the others.
    pub fn warm_up(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.verify_dummy("warm-up").await;
        });
    }

    /// Whether a stored hash was made at another cost than the configured one.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        stored_cost(hash) != Some(self.cost)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HasherError> + Send + 'static,
    ) -> Result<T, HasherError> {
        let slot = self.admit()?;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HasherError::Failed)?;
        // The place and the permit go with the work: a request that is
        // cancelled (timeout, disconnect) does not free them while its hash
        // still runs, so the bound holds under the flood it is for.
        tokio::task::spawn_blocking(move || {
            let _held = (slot, permit);
            work()
        })
        .await
        .map_err(|_| HasherError::Failed)?
    }

    /// A place among the running and waiting hashes, or `Busy` at once.
    fn admit(&self) -> Result<AdmittedSlot, HasherError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.max_admitted {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("tessera_bcrypt_rejected_total").increment(1);
            return Err(HasherError::Busy);
        }
        Ok(AdmittedSlot(self.admitted.clone()))
    }
}

/// Gives the place back when the hash is done or its request went away.
struct AdmittedSlot(Arc<AtomicUsize>);

impl Drop for AdmittedSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The cost field of a modular-crypt bcrypt hash (`$2b$12$...`).
pub fn stored_cost(hash: &str) -> Option<u32> {
    let mut parts = hash.split('$');
    let (_, variant, cost) = (parts.next()?, parts.next()?, parts.next()?);
    if !matches!(variant, "2a" | "2b" | "2y" | "2x") {
        return None;
    }
    cost.parse().ok()
}

/// `$2y$` (PHP) and `$2x$` hashes verify like `$2b$`; the crate only parses some prefixes.
fn normalise_prefix(hash: &str) -> String {
    match hash.get(..4) {
        Some("$2y$") | Some("$2x$") => format!("$2b${}", &hash[4..]),
        _ => hash.to_owned(),
    }
}

/// Whether a password has an acceptable length (in bytes, as bcrypt counts).
pub fn password_length_ok(password: &str) -> bool {
    PASSWORD_BYTES.contains(&password.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verify_and_rehash_detection() {
        let hasher = PasswordHasher::new(4, 8);
        let hash = hasher.hash("correct horse").await.expect("hash");
        assert!(hasher.verify("correct horse", &hash).await.expect("verify"));
        assert!(!hasher.verify("wrong horse", &hash).await.expect("verify"));
        assert!(!hasher.needs_rehash(&hash));
        assert!(PasswordHasher::new(5, 8).needs_rehash(&hash));
        assert!(!hasher.verify("x", "not a hash").await.expect("verify"));
        hasher.verify_dummy("anything").await.expect("dummy");
    }

    #[tokio::test]
    async fn accepts_2a_and_2y_prefixes() {
        let hasher = PasswordHasher::new(4, 8);
        let hash = hasher.hash("password1").await.expect("hash");
        for prefix in ["$2a$", "$2y$"] {
            let other = format!("{prefix}{}", &hash[4..]);
            assert!(hasher.verify("password1", &other).await.expect("verify"));
            assert_eq!(stored_cost(&other), Some(4));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_busy_at_once() {
        let hasher = PasswordHasher::new(10, 0);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let running: Vec<_> = (0..cores)
            .map(|_| {
                let h = hasher.clone();
                tokio::spawn(async move { h.hash("password1").await })
            })
            .collect();
        // Wait until every core's slot is taken, then one more is refused.
        while hasher.admitted.load(Ordering::Acquire) < cores {
            tokio::task::yield_now().await;
        }
        let start = Instant::now();
        assert!(matches!(
            hasher.hash("password1").await,
            Err(HasherError::Busy)
        ));
        assert!(start.elapsed() < Duration::from_millis(50));
        for task in running {
            task.await.unwrap().unwrap();
        }
        assert_eq!(hasher.admitted.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_cheaper_hash_fails_as_slowly_as_one_at_cost() {
        let hasher = PasswordHasher::new(8, 8);
        let at_cost = hasher.hash("password1").await.unwrap();
        let legacy = bcrypt::hash("password1", 4).unwrap();
        // Learn the time of a verify at the configured cost.
        assert!(!hasher.verify("wrong-password", &at_cost).await.unwrap());
        let typical = Duration::from_nanos(hasher.verify_nanos.load(Ordering::Relaxed));
        let start = Instant::now();
        assert!(!hasher.verify("wrong-password", &legacy).await.unwrap());
        assert!(
            start.elapsed() >= typical,
            "{:?} < {typical:?}",
            start.elapsed()
        );
        // A right password is not padded.
        assert!(hasher.verify("password1", &legacy).await.unwrap());
    }

    #[test]
    fn password_lengths() {
        assert!(!password_length_ok("1234567"));
        assert!(password_length_ok("12345678"));
        assert!(password_length_ok(&"a".repeat(72)));
        assert!(!password_length_ok(&"a".repeat(73)));
        // 24 three-byte characters are 72 bytes; 25 are too many.
        assert!(password_length_ok(&"€".repeat(24)));
        assert!(!password_length_ok(&"€".repeat(25)));
    }
}
