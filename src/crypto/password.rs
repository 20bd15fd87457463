//! bcrypt, always on blocking threads and never more at once than there are
//! cores, so that logins cannot starve the async workers.

use std::sync::Arc;

use tokio::sync::{OnceCell, Semaphore};

/// The smallest and largest password in bytes. bcrypt ignores what follows
/// byte 72, so longer passwords are refused instead of silently truncated.
pub const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=72;

/// Something went wrong inside the hasher (a panicked or cancelled task).
#[derive(Debug, thiserror::Error)]
#[error("password hasher failed")]
pub struct HasherError;

/// Hashes and verifies passwords at the configured cost.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when an email is
    /// unknown so that login takes the same time either way.
    dummy: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    pub fn new(cost: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            cost,
            permits: Arc::new(Semaphore::new(cores)),
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
        self.run(move || bcrypt::hash(password, cost).map_err(|_| HasherError))
            .await
    }

    /// Whether `password` matches `hash`. A malformed stored hash is a mismatch.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, HasherError> {
        let password = password.to_owned();
        let hash = normalise_prefix(hash);
        self.run(move || Ok(bcrypt::verify(password, &hash).unwrap_or(false)))
            .await
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
        let _permit = self.permits.acquire().await.map_err(|_| HasherError)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| HasherError)?
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
        let hasher = PasswordHasher::new(4);
        let hash = hasher.hash("correct horse").await.expect("hash");
        assert!(hasher.verify("correct horse", &hash).await.expect("verify"));
        assert!(!hasher.verify("wrong horse", &hash).await.expect("verify"));
        assert!(!hasher.needs_rehash(&hash));
        assert!(PasswordHasher::new(5).needs_rehash(&hash));
        assert!(!hasher.verify("x", "not a hash").await.expect("verify"));
        hasher.verify_dummy("anything").await.expect("dummy");
    }

    #[tokio::test]
    async fn accepts_2a_and_2y_prefixes() {
        let hasher = PasswordHasher::new(4);
        let hash = hasher.hash("password1").await.expect("hash");
        for prefix in ["$2a$", "$2y$"] {
            let other = format!("{prefix}{}", &hash[4..]);
            assert!(hasher.verify("password1", &other).await.expect("verify"));
            assert_eq!(stored_cost(&other), Some(4));
        }
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
