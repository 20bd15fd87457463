//! Fixed-window limits kept in the token store, so they hold across
//! instances: brute-force throttling of logins and rate limits of OTPs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, UnixTime};
use crate::store::{StoreError, TokenStore};

/// What a throttle can answer besides "go ahead": the limit is reached, or
/// the counters could not be read. Converts into the callers' errors
/// (`DomainError`, `GrantError`) kind for kind.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("too many attempts, retry after {0:?}")]
    Throttled(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The part of a client address that budgets are kept for: the address for
/// IPv4, the /64 network for IPv6 (one subscriber usually holds a whole /64,
/// so per-address budgets would give them 2^64 tries).
pub fn address_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

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
    fn refuse(limit: Limit, now: UnixTime) -> ThrottleError {
        metrics::counter!("tessera_throttled_total").increment(1);
        ThrottleError::Throttled(Self::retry_after(limit, now))
    }

    /// Counts one event and refuses it if that goes over `limit`.
    pub async fn admit(&self, key: &str, limit: Limit) -> Result<(), ThrottleError> {
        let now = self.clock.now();
        if self.store.hit(key, limit.window, now).await? > limit.max {
            return Err(Self::refuse(limit, now));
        }
        Ok(())
    }

    /// Whether this is the first call for `key` in the current window of
    /// `window` seconds: one store increment. Lets a flood of refused
    /// requests write one audit event per window instead of one each.
    pub async fn first_in_window(&self, key: &str, window: u64) -> Result<bool, StoreError> {
        Ok(self.store.hit(key, window, self.clock.now()).await? == 1)
    }

    /// Takes one slot of each budget *before* the work it guards (a bcrypt
    /// verify, a code compare), atomically in the store: of N attempts in
    /// flight at once, at most `max` get a slot, whatever their timing. If
    /// any budget is spent, the slots taken are given back and the attempt
    /// is refused. A success the contract does not count is handed back
    /// with [`Reservation::refund`].
    pub async fn reserve(&self, budgets: &[(&str, Limit)]) -> Result<Reservation, ThrottleError> {
        let now = self.clock.now();
        let mut reservation = Reservation {
            store: self.store.clone(),
            now,
            taken: Vec::with_capacity(budgets.len()),
        };
        for (key, limit) in budgets {
            let count = match self.store.hit(key, limit.window, now).await {
                Ok(count) => count,
                Err(e) => {
                    reservation.refund().await;
                    return Err(e.into());
                }
            };
            reservation.taken.push(((*key).to_owned(), limit.window));
            if count > limit.max {
                reservation.refund().await;
                return Err(Self::refuse(*limit, now));
            }
        }
        Ok(reservation)
    }
}

/// Budget slots taken by [`Throttle::reserve`]. Dropping it keeps them
/// (the attempt counted); `refund` gives them back.
#[must_use = "a reservation is either kept (dropped) or refunded"]
pub struct Reservation {
    store: Arc<dyn TokenStore>,
    /// The time the slots were taken: a refund goes to the same windows.
    now: UnixTime,
    taken: Vec<(String, u64)>,
}

impl Reservation {
    /// Gives every slot back. Best effort: a store that cannot be reached
    /// leaves the attempt counted, which errs on the safe side.
    pub async fn refund(self) {
        for (key, window) in &self.taken {
            if let Err(e) = self.store.release(key, *window, self.now).await {
                tracing::warn!(error = %e, "refunding an attempt budget failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(other));
        assert_eq!(address_bucket("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(
            address_bucket("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7"
        );
    }

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
