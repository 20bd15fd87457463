//! Fixed-window limits kept in the token store, so they hold across
//! instances: brute-force throttling of logins and rate limits of OTPs.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, UnixTime};
use crate::domain::DomainError;
use crate::store::TokenStore;

/// At most `max` events per `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window: u64,
}

/// Counts events per key and says when a key is over its limit.
#[derive(Clone)]
pub struct Throttle {
    store: Arc<dyn TokenStore>,
    clock: Clock,
}

impl Throttle {
    pub fn new(store: Arc<dyn TokenStore>, clock: Clock) -> Self {
        Self { store, clock }
    }

    /// How long until the window of `limit` that `now` falls in ends (at
    /// least a second).
    fn retry_after(limit: Limit, now: UnixTime) -> Duration {
        let window = limit.window.max(1) as i64;
        let retry = (now.div_euclid(window) + 1) * window - now;
        Duration::from_secs(retry.max(1) as u64)
    }

    /// Refuses an event over `limit`: counts the refusal in
    /// `tessera_throttled_total` and says when to retry.
    fn refuse(limit: Limit, now: UnixTime) -> DomainError {
        metrics::counter!("tessera_throttled_total").increment(1);
        DomainError::Throttled(Self::retry_after(limit, now))
    }

    /// `Throttled` if `key` already reached `limit`; counts nothing.
    pub async fn check(&self, key: &str, limit: Limit) -> Result<(), DomainError> {
        let now = self.clock.now();
        if self.store.count(key, limit.window, now).await? >= limit.max {
            return Err(Self::refuse(limit, now));
        }
        Ok(())
    }

    /// Counts one event for `key`.
    pub async fn record(&self, key: &str, limit: Limit) -> Result<(), DomainError> {
        self.store.hit(key, limit.window, self.clock.now()).await?;
        Ok(())
    }

    /// Counts one event and refuses it if that goes over `limit`.
    pub async fn admit(&self, key: &str, limit: Limit) -> Result<(), DomainError> {
        let now = self.clock.now();
        if self.store.hit(key, limit.window, now).await? > limit.max {
            return Err(Self::refuse(limit, now));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_the_rest_of_the_window_and_at_least_a_second() {
        let limit = Limit { max: 1, window: 60 };
        assert_eq!(Throttle::retry_after(limit, 120), Duration::from_secs(60));
        assert_eq!(Throttle::retry_after(limit, 121), Duration::from_secs(59));
        assert_eq!(Throttle::retry_after(limit, 179), Duration::from_secs(1));
        let zero = Limit { max: 1, window: 0 };
        assert_eq!(Throttle::retry_after(zero, 7), Duration::from_secs(1));
    }
}
