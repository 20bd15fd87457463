//! What went wrong, in the language of the domain: [`DomainError`] for the
//! user, client and one-time-code services, [`GrantError`] for the OAuth
//! grants (RFC 6749 §5.2). `http::error` is the one place that turns them
//! into JSON errors with status codes.

use std::collections::BTreeMap;

use crate::crypto::keys::KeyError;
use crate::crypto::password::HasherError;
use crate::domain::throttle::ThrottleError;
use crate::store::StoreError;

/// Field name → what is wrong with it (never the value itself).
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("current password is wrong")]
    WrongPassword,
    #[error("user not found")]
    UserNotFound,
    /// No such thing of the caller's (a session, a consent): also the
    /// answer for one that exists but belongs to someone else.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The password was right, but an administrator disabled the account.
    /// Only ever answered after a correct password, so it tells nothing to
    /// someone who does not know it.
    #[error("account disabled")]
    AccountDisabled,
    #[error("client not found")]
    ClientNotFound,
    /// The built-in client `tessera` cannot be changed, rotated or deleted.
    #[error("the built-in client cannot be changed")]
    BuiltInClient,
    /// A public client has no secret to rotate.
    #[error("a public client has no secret")]
    PublicClient,
    /// The caller's user is not (or no longer) an admin.
    #[error("the admin role is required")]
    NotAdmin,
    /// Wrong, expired, used or unknown-email one-time code: one error for all.
    #[error("invalid one-time code")]
    InvalidOtp,
    #[error("too many attempts, retry after {0:?}")]
    Throttled(std::time::Duration),
    /// The grant machinery (which issues the tokens of a login too) refused
    /// the request: one of the RFC 6749 §5.2 refusals, never a store, key
    /// or throttle failure (those keep their own variants).
    #[error(transparent)]
    Grant(GrantError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hasher(#[from] HasherError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// RFC 6749 §5.2 errors, in the language of the domain.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// Unknown client, wrong secret, or the wrong authentication method.
    #[error("invalid_client")]
    InvalidClient,
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(&'static str),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    /// A DPoP proof failed a check, was replayed, or was missing where the
    /// client or server requires one (RFC 9449 §5).
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(&'static str),
    /// The DPoP proof must carry this server nonce (RFC 9449 §8).
    #[error("use_dpop_nonce")]
    UseDpopNonce(String),
    /// Too many failed client authentications from this address or for
    /// this client.
    #[error("client authentication throttled for {0:?}")]
    Throttled(std::time::Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Every kind keeps its meaning: a failure of the store, the keys or the
/// throttle stays one; a refusal stays a refusal.
impl From<GrantError> for DomainError {
    fn from(error: GrantError) -> Self {
        match error {
            GrantError::Store(e) => DomainError::Store(e),
            GrantError::Key(e) => DomainError::Key(e),
            GrantError::Throttled(retry) => DomainError::Throttled(retry),
            refused @ (GrantError::InvalidRequest(_)
            | GrantError::InvalidClient
            | GrantError::InvalidGrant(_)
            | GrantError::UnauthorizedClient(_)
            | GrantError::UnsupportedGrantType
            | GrantError::InvalidScope(_)
            | GrantError::InvalidDpopProof(_)
            | GrantError::UseDpopNonce(_)) => DomainError::Grant(refused),
        }
    }
}

impl From<ThrottleError> for DomainError {
    fn from(error: ThrottleError) -> Self {
        match error {
            ThrottleError::Throttled(retry) => DomainError::Throttled(retry),
            ThrottleError::Store(e) => DomainError::Store(e),
        }
    }
}

impl From<ThrottleError> for GrantError {
    fn from(error: ThrottleError) -> Self {
        match error {
            ThrottleError::Throttled(retry) => GrantError::Throttled(retry),
            ThrottleError::Store(e) => GrantError::Store(e),
        }
    }
}

impl DomainError {
    /// A validation failure of one field.
    pub fn field(name: &str, message: &str) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(name.to_owned(), message.to_owned());
        Self::Validation(errors)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_grant_error_keeps_its_kind_in_the_domain() {
        let store = || StoreError::Unavailable {
            backend: "redis",
            reason: "down".into(),
        };
        assert!(matches!(
            DomainError::from(GrantError::Store(store())),
            DomainError::Store(StoreError::Unavailable { .. })
        ));
        assert!(matches!(
            DomainError::from(GrantError::Key(KeyError::Signing)),
            DomainError::Key(KeyError::Signing)
        ));
        assert!(matches!(
            DomainError::from(GrantError::Throttled(Duration::from_secs(2))),
            DomainError::Throttled(d) if d == Duration::from_secs(2)
        ));
        for refused in [
            GrantError::InvalidRequest("x"),
            GrantError::InvalidClient,
            GrantError::InvalidGrant("x"),
            GrantError::UnauthorizedClient("x"),
            GrantError::UnsupportedGrantType,
            GrantError::InvalidScope("x"),
        ] {
            assert!(matches!(
                DomainError::from(refused),
                DomainError::Grant(
                    GrantError::InvalidRequest(_)
                        | GrantError::InvalidClient
                        | GrantError::InvalidGrant(_)
                        | GrantError::UnauthorizedClient(_)
                        | GrantError::UnsupportedGrantType
                        | GrantError::InvalidScope(_)
                )
            ));
        }
    }

    #[test]
    fn a_throttle_error_stays_a_throttle_or_store_error() {
        let retry = Duration::from_secs(5);
        assert!(matches!(
            DomainError::from(ThrottleError::Throttled(retry)),
            DomainError::Throttled(d) if d == retry
        ));
        assert!(matches!(
            GrantError::from(ThrottleError::Throttled(retry)),
            GrantError::Throttled(d) if d == retry
        ));
        let store = StoreError::Internal {
            backend: "sqlite",
            reason: "x".into(),
        };
        assert!(matches!(
            GrantError::from(ThrottleError::Store(store)),
            GrantError::Store(StoreError::Internal { .. })
        ));
    }
}
