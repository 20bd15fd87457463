//! The token store's short-lived state besides families and codes:
//! fixed-window counters, remembered consents and one-time codes.

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::store::StoreError;

/// Fixed-window counters (rate limits, throttling): the window of `now` is
/// `now / window`, and a window's count expires with it.
#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Counts one event for `key` in the fixed window `now / window` and
    /// returns the window's count so far.
    async fn hit(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError>;

    /// The count of `key` in the current window, without counting.
    async fn count(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError>;

    /// Undoes one [`hit`](Self::hit) of `key` in the window of `now` and
    /// returns the window's count left. Never goes below zero, and never
    /// creates a count (nor, on Redis, a key without a TTL): releasing a
    /// window that holds nothing returns 0 and changes nothing.
    async fn release(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError>;
}

/// A remembered consent: one approved scope of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    pub client_id: String,
    /// Canonical, space separated.
    pub scope: String,
    /// `None` for consents remembered before grant times were stored (the
    /// domain estimates it from the expiry).
    pub granted_at: Option<UnixTime>,
    pub expires_at: UnixTime,
}

/// Remembered consents of users to clients.
#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Remembers that a user approved `scope` (canonical) for a client at
    /// `granted_at`. "Log out everywhere" (`revoke_user`) forgets every
    /// consent too.
    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        granted_at: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError>;
    /// Every unexpired consent of the user, in no order.
    async fn consents(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> Result<Vec<ConsentRecord>, StoreError>;
    /// Forgets every consent of the user to `client_id` (whatever its
    /// scope) in one step; false if there was none.
    async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<bool, StoreError>;
    /// Whether that exact consent is remembered and unexpired.
    async fn has_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
}

/// What checking a one-time code found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtpCheck {
    Match,
    Mismatch,
    /// No live code: none was issued, it expired, or it was burnt.
    NoCode,
}

/// What a one-time code is for. Part of the code's key: a code issued for
/// one purpose is never found when checking for another, so an email
/// verification code can never reset a password, nor the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtpPurpose {
    PasswordReset,
    EmailVerification,
}

impl OtpPurpose {
    /// The stored name. NEVER CHANGE: stored codes are keyed by it.
    pub fn as_str(self) -> &'static str {
        match self {
            OtpPurpose::PasswordReset => "password_reset",
            OtpPurpose::EmailVerification => "email_verification",
        }
    }

    pub const ALL: [OtpPurpose; 2] = [OtpPurpose::PasswordReset, OtpPurpose::EmailVerification];
}

/// One-time codes (password reset and email verification by email), one
/// live code per user and purpose.
#[async_trait]
pub trait OtpStore: Send + Sync {
    /// Stores a user's one-time code digest for `purpose`, replacing any
    /// earlier one of that purpose.
    async fn put_otp(
        &self,
        user_id: &str,
        purpose: OtpPurpose,
        digest: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError>;
    /// Checks a code of `purpose` in one atomic step: a match burns it; a
    /// miss counts a try and burns it at `max_attempts`; expired or absent
    /// is `NoCode`.
    async fn check_otp(
        &self,
        user_id: &str,
        purpose: OtpPurpose,
        digest: &str,
        now: UnixTime,
        max_attempts: u32,
    ) -> Result<OtpCheck, StoreError>;
}
