//! Wall-clock time, injected so tests can move it without sleeping.
//!
//! `tokio::time::pause` does not move the wall clock that `exp` is checked
//! against, which is why this exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, the unit of every JWT and store expiry.
pub type UnixTime = i64;

/// The system clock in production; a settable one in tests.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Seconds added to the system time (tests only move it forward or back).
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The real clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Now, in whole seconds since the Unix epoch.
    pub fn now(&self) -> UnixTime {
        let real = time::OffsetDateTime::now_utc().unix_timestamp();
        real + self.offset.load(Ordering::Relaxed)
    }

    /// Now, in milliseconds since the Unix epoch (credential epochs).
    pub fn now_millis(&self) -> u64 {
        let real = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let offset = i128::from(self.offset.load(Ordering::Relaxed)) * 1000;
        u64::try_from(real + offset).unwrap_or(0)
    }

    /// Now, as a date-time (for `created_at`/`updated_at`).
    pub fn now_datetime(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(self.now())
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
    }

    /// Moves this clock (and every clone of it) by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// The access-token verifier judges `exp` by this clock too.
impl tessera_resource::Clock for Clock {
    fn now(&self) -> UnixTime {
        Clock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_all_clones() {
        let clock = Clock::system();
        let clone = clock.clone();
        let before = clone.now();
        clock.advance(3600);
        assert!(clone.now() >= before + 3600);
    }
}
