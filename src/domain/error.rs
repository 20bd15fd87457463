//! What went wrong, in the language of the domain. `http::error` is the one
//! place that turns these into status codes.

use std::collections::BTreeMap;

use crate::crypto::keys::KeyError;
use crate::crypto::password::HasherError;
use crate::domain::grants::GrantError;
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
    /// The caller's user is not (or no longer) an admin.
    #[error("the admin role is required")]
    NotAdmin,
    /// Wrong, expired, used or unknown-email one-time code: one error for all.
    #[error("invalid one-time code")]
    InvalidOtp,
    #[error("too many attempts, retry after {0:?}")]
    Throttled(std::time::Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hasher(#[from] HasherError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl From<GrantError> for DomainError {
    fn from(error: GrantError) -> Self {
        match error {
            GrantError::Store(e) => DomainError::Store(e),
            GrantError::Key(e) => DomainError::Key(e),
            other => DomainError::Store(StoreError::Internal {
                backend: "grants",
                reason: other.to_string(),
            }),
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
