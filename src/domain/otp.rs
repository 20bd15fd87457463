//! Mailed 6-digit one-time codes: forgot password (a code, then a reset
//! with it) and email verification (a code, then the proof of the
//! mailbox). Both purposes share the rules, the storage and the rate
//! limits (a code request or try of one counts against the other's budget
//! too), but a code is stored under its purpose and never found for another.
//!
//! Nothing here may tell an attacker whether an email has an account: the
//! request answers alike and is rate limited alike for every email, and a
//! reset fails with one error whatever went wrong.

use crate::clock::Clock;
use crate::crypto::password::PasswordHasher;
use crate::crypto::secret::{hmac_sha256, random_bytes, sha256_hex};
use crate::domain::audit::{Audit, Event, EventType};
use crate::domain::throttle::{Limit, Throttle, address_bucket};
use crate::domain::tokens::TokenService;
use crate::domain::users::replace_password;
use crate::domain::{DomainError, validate};
use crate::mail::{Notice, Outbox};
use crate::store::{OtpCheck, OtpPurpose, TokenStore, UserRecord, UserStore};
use std::net::IpAddr;
use std::sync::Arc;

/// How long a code lives, in seconds.
pub const OTP_TTL: i64 = 10 * 60;
/// Wrong tries that burn a code.
pub const OTP_MAX_ATTEMPTS: u32 = 5;
/// Tries per email per client address per day, across codes: a new code
/// resets the per-code count, so without a cap a requester would get 5
/// guesses per code, every code, forever.
pub const OTP_TRIES_PER_ADDRESS_PER_DAY: Limit = Limit {
    max: 10,
    window: 24 * 3600,
};
/// Tries per email per day from all addresses: the bound on guesses at one
/// account, high enough that one address alone cannot lock its owner out.
pub const OTP_TRIES_PER_DAY: Limit = Limit {
    max: 50,
    window: 24 * 3600,
};

/// Rate limits of the OTP endpoints.
#[derive(Debug, Clone, Copy)]
pub struct OtpLimits {
    pub per_email: [Limit; 2],
    pub per_address: Limit,
    pub resets_per_address: Limit,
}

impl Default for OtpLimits {
    fn default() -> Self {
        Self {
            per_email: [
                Limit { max: 1, window: 60 },
                Limit {
                    max: 5,
                    window: 3600,
                },
            ],
            per_address: Limit {
                max: 30,
                window: 3600,
            },
            resets_per_address: Limit {
                max: 30,
                window: 600,
            },
        }
    }
}

/// Issues and checks one-time codes.
pub struct OtpService {
    users: Arc<dyn UserStore>,
    store: Arc<dyn TokenStore>,
    tokens: Arc<TokenService>,
    hasher: PasswordHasher,
    outbox: Arc<dyn Outbox>,
    clock: Clock,
    key: Vec<u8>,
    limits: OtpLimits,
    throttle: Throttle,
    audit: Arc<Audit>,
}

/// A uniformly distributed 6-digit code from the OS CSPRNG.
fn six_digits() -> String {
    loop {
        let n = u32::from_be_bytes(random_bytes::<4>());
        // Rejection sampling: drop the top sliver so every code is equally likely.
        if n < u32::MAX - (u32::MAX % 1_000_000) {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

impl OtpService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserStore>,
        store: Arc<dyn TokenStore>,
        tokens: Arc<TokenService>,
        hasher: PasswordHasher,
        outbox: Arc<dyn Outbox>,
        clock: Clock,
        key: Vec<u8>,
        limits: OtpLimits,
        audit: Arc<Audit>,
    ) -> Self {
        let throttle = Throttle::new(store.clone(), clock.clone());
        Self {
            users,
            store,
            tokens,
            hasher,
            outbox,
            clock,
            key,
            limits,
            throttle,
            audit,
        }
    }

    /// Only this digest is stored: a keyed HMAC over the user id and code
    /// (and the purpose, for every purpose but the first one there was).
    fn digest(&self, user_id: &str, purpose: OtpPurpose, code: &str) -> String {
        let input = match purpose {
            // NEVER CHANGE: reset codes in flight across an upgrade.
            OtpPurpose::PasswordReset => format!("{user_id}:{code}"),
            other => format!("{}:{user_id}:{code}", other.as_str()),
        };
        hex::encode(hmac_sha256(&self.key, input.as_bytes()))
    }

    /// `forgotpasswords`: mails a code if the account exists; always the same
    /// outcome for the caller.
    pub async fn request(&self, email: &str, client: IpAddr) -> Result<(), DomainError> {
        let email = validate::email(email).map_err(|m| DomainError::field("email", m))?;
        self.admit_code_request(&email, client).await?;
        // A disabled account gets no code: it could not use it.
        let Some(user) = self.users.user_by_email(&email).await? else {
            return Ok(());
        };
        if user.disabled {
            return Ok(());
        }
        self.send_code(&user, OtpPurpose::PasswordReset).await?;
        tracing::info!(user_id = %user.id, "password reset code issued");
        Ok(())
    }

    /// Mails `user` a code that proves their mailbox. Rate limited with the
    /// password-reset requests of the same email and address.
    pub async fn request_verification(
        &self,
        user: &UserRecord,
        client: IpAddr,
    ) -> Result<(), DomainError> {
        self.admit_code_request(&user.email, client).await?;
        self.send_code(user, OtpPurpose::EmailVerification).await?;
        tracing::info!(user_id = %user.id, "email verification code issued");
        Ok(())
    }

    /// The request limits, per address and per (normalised) email. They
    /// count every email, known or not, so a 429 says nothing.
    async fn admit_code_request(&self, email: &str, client: IpAddr) -> Result<(), DomainError> {
        let email_key = format!("otp-req:email:{}", sha256_hex(email.as_bytes()));
        self.throttle
            .admit(
                &format!("otp-req:addr:{}", address_bucket(client)),
                self.limits.per_address,
            )
            .await?;
        for limit in self.limits.per_email {
            self.throttle
                .admit(&format!("{email_key}:{}", limit.window), limit)
                .await?;
        }
        Ok(())
    }

    /// Stores a new code of `purpose` for `user` (replacing theirs of that
    /// purpose) and mails it.
    async fn send_code(&self, user: &UserRecord, purpose: OtpPurpose) -> Result<(), DomainError> {
        let code = six_digits();
        let expires_at = self.clock.now() + OTP_TTL;
        self.store
            .put_otp(
                &user.id,
                purpose,
                &self.digest(&user.id, purpose, &code),
                expires_at,
            )
            .await?;
        let minutes = (OTP_TTL / 60) as u64;
        let notice = match purpose {
            OtpPurpose::PasswordReset => Notice::Otp { code, minutes },
            OtpPurpose::EmailVerification => Notice::VerifyEmail { code, minutes },
        };
        self.outbox.send(&user.email, notice);
        Ok(())
    }

    /// `resetpasswordotps`: sets a new password with a valid code, then logs
    /// the user out everywhere. Any failure of the code is `InvalidOtp`.
    pub async fn reset(
        &self,
        email: &str,
        code: &str,
        new_password: &str,
        client: IpAddr,
    ) -> Result<(), DomainError> {
        validate::password(new_password).map_err(|m| DomainError::field("new_password", &m))?;
        let user = self
            .redeem(email, OtpPurpose::PasswordReset, code, client)
            .await?;
        let new_hash = self.hasher.hash(new_password).await?;
        let replaced = replace_password(
            self.users.clone(),
            self.tokens.clone(),
            self.clock.clone(),
            &user,
            new_hash,
        )
        .await?;
        if !replaced {
            // The password changed between our read and our write (another
            // reset or a change): this code's reset did not happen.
            return Err(DomainError::InvalidOtp);
        }
        // A code that arrived by mail proves the mailbox.
        self.users
            .mark_email_verified(&user.id, self.clock.now_datetime())
            .await?;
        self.outbox.send(&user.email, Notice::PasswordChanged);
        self.audit
            .record(
                Event::new(EventType::PasswordReset)
                    .user(&user.id)
                    .ip(client),
            )
            .await;
        tracing::info!(user_id = %user.id, "password reset with a one-time code; sessions revoked");
        Ok(())
    }

    /// Proves `user`'s mailbox with a mailed verification code; the user
    /// with `email_verified` set. Any failure of the code is `InvalidOtp`.
    pub async fn verify_email(
        &self,
        user: &UserRecord,
        code: &str,
        client: IpAddr,
    ) -> Result<UserRecord, DomainError> {
        let owner = self
            .redeem(&user.email, OtpPurpose::EmailVerification, code, client)
            .await?;
        if owner.id != user.id {
            return Err(DomainError::InvalidOtp);
        }
        let verified = self
            .users
            .mark_email_verified(&user.id, self.clock.now_datetime())
            .await?
            .ok_or(DomainError::UserNotFound)?;
        self.audit
            .record(
                Event::new(EventType::EmailVerified)
                    .user(&user.id)
                    .ip(client),
            )
            .await;
        tracing::info!(user_id = %user.id, "email verified with a one-time code");
        Ok(verified)
    }

    /// Uses a code of `purpose` for the account with `email`: the account
    /// if the code was right (and is now burnt), else `InvalidOtp` for
    /// whatever went wrong.
    async fn redeem(
        &self,
        email: &str,
        purpose: OtpPurpose,
        code: &str,
        client: IpAddr,
    ) -> Result<UserRecord, DomainError> {
        let now = self.clock.now();
        self.throttle
            .admit(
                &format!("otp-reset:addr:{}", address_bucket(client)),
                self.limits.resets_per_address,
            )
            .await?;
        let well_formed = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
        let Ok(email) = validate::email(email) else {
            return Err(DomainError::InvalidOtp);
        };
        // The day's budgets are kept per email, known or not, and taken
        // before anything is looked up or compared, for every try but a
        // right code: a 429 says nothing about whether the account exists.
        // The per-code tries are counted by the compare itself, atomically.
        // Both purposes share them: a second kind of code is no second
        // budget of guesses.
        let email_key = sha256_hex(email.as_bytes());
        let per_address = format!("otp-try:day:{email_key}:{}", address_bucket(client));
        let per_email = format!("otp-try:day:{email_key}");
        let reservation = self
            .throttle
            .reserve(&[
                (&per_address, OTP_TRIES_PER_ADDRESS_PER_DAY),
                (&per_email, OTP_TRIES_PER_DAY),
            ])
            .await?;
        let user = match well_formed {
            true => self.users.user_by_email(&email).await?,
            false => None,
        };
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(DomainError::InvalidOtp);
        };
        let checked = self
            .store
            .check_otp(
                &user.id,
                purpose,
                &self.digest(&user.id, purpose, code),
                now,
                OTP_MAX_ATTEMPTS,
            )
            .await?;
        if checked != OtpCheck::Match {
            drop(reservation);
            return Err(DomainError::InvalidOtp);
        }
        reservation.refund().await;
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let code = six_digits();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
