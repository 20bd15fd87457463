//! Where Tessera's errors become statuses: `ApiError` becomes RFC 9457
//! problem+json (built by `crate::problem`); the OAuth endpoints use
//! `OAuthError` instead, because RFC 6749 fixes their shape. (The HTML pages
//! of `/authorize` carry their own statuses, and the reusable resource
//! layer's `BearerRejection` its own 401/503.)

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::crypto::password::HasherError;
use crate::domain::{DomainError, FieldErrors, GrantError};
use crate::problem::problem;
use crate::store::StoreError;

mod oauth;

pub use oauth::{DPOP_HEADER, DPOP_NONCE, OAuthError, set_dpop_nonce};

/// The cause of a 500, carried in a response extension so that one
/// middleware logs it once and no body ever shows it.
#[derive(Clone, Debug)]
pub struct InternalCause(pub String);

/// Every error a non-OAuth endpoint can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("malformed request body")]
    MalformedBody(&'static str),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("current password is wrong")]
    WrongPassword,
    #[error("token does not grant this")]
    InsufficientScope(&'static str),
    #[error("user not found")]
    UserNotFound,
    #[error("invalid one-time code")]
    InvalidOtp,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("client not found")]
    ClientNotFound,
    #[error("account disabled")]
    AccountDisabled,
    #[error("the built-in client cannot be changed")]
    BuiltInClient,
    #[error("a public client has no secret")]
    PublicClient,
    /// An RFC 6749 §5.2 refusal met outside the OAuth endpoints (issuing
    /// a login's tokens): 400 with the OAuth error as `code`.
    /// RFC 9449 §8: the DPoP proof must carry this nonce.
    #[error("use_dpop_nonce")]
    UseDpopNonce(String),
    #[error("{code}: {detail}")]
    GrantRefused {
        code: &'static str,
        detail: &'static str,
    },
    #[error("too many requests")]
    Throttled(Duration),
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    /// Too much work queued (the password hasher): come back in a moment.
    #[error("overloaded")]
    Overloaded,
    #[error("request timed out")]
    RequestTimeout,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Validation(errors) => ApiError::Validation(errors),
            DomainError::EmailTaken => ApiError::EmailTaken,
            DomainError::InvalidCredentials => ApiError::InvalidCredentials,
            DomainError::WrongPassword => ApiError::WrongPassword,
            DomainError::UserNotFound => ApiError::UserNotFound,
            DomainError::NotFound(_) => ApiError::NotFound,
            DomainError::AccountDisabled => ApiError::AccountDisabled,
            DomainError::ClientNotFound => ApiError::ClientNotFound,
            DomainError::BuiltInClient => ApiError::BuiltInClient,
            DomainError::PublicClient => ApiError::PublicClient,
            DomainError::NotAdmin => ApiError::Forbidden("this endpoint needs the admin role"),
            DomainError::InvalidOtp => ApiError::InvalidOtp,
            DomainError::Throttled(retry) => ApiError::Throttled(retry),
            DomainError::Grant(e) => e.into(),
            DomainError::Store(e) => e.into(),
            DomainError::Hasher(HasherError::Busy) => ApiError::Overloaded,
            DomainError::Hasher(e @ HasherError::Failed) => ApiError::Internal(e.to_string()),
            DomainError::Key(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// A grant's error outside the OAuth endpoints: refusals stay client
/// errors (400, the RFC 6749 code as `code`); store, key and throttle
/// failures map as they do everywhere else.
impl From<GrantError> for ApiError {
    fn from(error: GrantError) -> Self {
        let refused = |code, detail| ApiError::GrantRefused { code, detail };
        match error {
            GrantError::InvalidRequest(d) => refused("invalid_request", d),
            GrantError::InvalidClient => refused("invalid_client", "client authentication failed"),
            GrantError::InvalidGrant(d) => refused("invalid_grant", d),
            GrantError::UnauthorizedClient(d) => refused("unauthorized_client", d),
            GrantError::UnsupportedGrantType => {
                refused("unsupported_grant_type", "this grant type is not supported")
            }
            GrantError::InvalidScope(d) => refused("invalid_scope", d),
            GrantError::InvalidDpopProof(d) => refused("invalid_dpop_proof", d),
            GrantError::UseDpopNonce(nonce) => ApiError::UseDpopNonce(nonce),
            GrantError::Throttled(retry) => ApiError::Throttled(retry),
            GrantError::Store(e) => e.into(),
            GrantError::Key(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { backend, .. } => {
                metrics::counter!("tessera_backend_errors_total", "backend" => backend)
                    .increment(1);
                ApiError::Unavailable(backend)
            }
            StoreError::Duplicate | StoreError::Internal { .. } => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

impl ApiError {
    /// The status the JSON API answers with; the pages answer with it too.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The problem's `detail`: the pages show the same wording.
    pub fn detail(&self) -> String {
        self.parts().2
    }

    /// Status, stable `code` and a human `detail` safe for any client.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "one or more fields are invalid".into(),
            ),
            ApiError::MalformedBody(why) => {
                (StatusCode::BAD_REQUEST, "malformed_json", (*why).into())
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json".into(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request bodies are limited to 64 KiB".into(),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource".into(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this resource".into(),
            ),
            ApiError::EmailTaken => (
                StatusCode::CONFLICT,
                "email_taken",
                "an account with this email already exists".into(),
            ),
            ApiError::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "email or password is incorrect".into(),
            ),
            ApiError::WrongPassword => (
                StatusCode::FORBIDDEN,
                "wrong_password",
                "the current password is incorrect".into(),
            ),
            ApiError::InsufficientScope(needed) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this endpoint needs a user access token with scope {needed}"),
            ),
            ApiError::UserNotFound => (
                StatusCode::NOT_FOUND,
                "user_not_found",
                "the user does not exist (or no longer exists)".into(),
            ),
            ApiError::InvalidOtp => (
                StatusCode::BAD_REQUEST,
                "invalid_otp",
                "the code is wrong, expired or already used".into(),
            ),
            ApiError::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", (*why).into()),
            ApiError::ClientNotFound => (
                StatusCode::NOT_FOUND,
                "client_not_found",
                "no client with this id".into(),
            ),
            ApiError::AccountDisabled => (
                StatusCode::UNAUTHORIZED,
                "account_disabled",
                "this account has been disabled by an administrator".into(),
            ),
            ApiError::BuiltInClient => (
                StatusCode::FORBIDDEN,
                "builtin_client",
                "the built-in client tessera cannot be changed, rotated or deleted".into(),
            ),
            ApiError::PublicClient => (
                StatusCode::CONFLICT,
                "public_client",
                "a public client has no secret to rotate".into(),
            ),
            ApiError::GrantRefused { code, detail } => {
                (StatusCode::BAD_REQUEST, *code, (*detail).into())
            }
            ApiError::UseDpopNonce(_) => (
                StatusCode::BAD_REQUEST,
                "use_dpop_nonce",
                "the DPoP proof must carry the server's nonce (DPoP-Nonce)".into(),
            ),
            ApiError::Throttled(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many attempts; retry later".into(),
            ),
            ApiError::Unavailable(backend) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                format!("the {backend} backend is unavailable; try again shortly"),
            ),
            ApiError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is busy; retry in a moment".into(),
            ),
            ApiError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request took too long".into(),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        let errors = match &self {
            ApiError::Validation(errors) => Some(errors),
            _ => None,
        };
        let mut response = problem(status, code, &detail, errors);
        match self {
            ApiError::Throttled(retry) => {
                let seconds = retry.as_secs().max(1).to_string();
                if let Ok(value) = HeaderValue::from_str(&seconds) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            ApiError::Overloaded => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::UseDpopNonce(nonce) => set_dpop_nonce(response.headers_mut(), &nonce),
            ApiError::InsufficientScope(needed) => {
                let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{needed}\"");
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ApiError::Internal(cause) => {
                response.extensions_mut().insert(InternalCause(cause));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the status of every variant, so a change is a decision.
    #[test]
    fn every_variant_has_its_status() {
        let cases = [
            (ApiError::Validation(FieldErrors::new()), 422),
            (ApiError::MalformedBody("x"), 400),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::PayloadTooLarge, 413),
            (ApiError::NotFound, 404),
            (ApiError::MethodNotAllowed, 405),
            (ApiError::EmailTaken, 409),
            (ApiError::InvalidCredentials, 401),
            (ApiError::WrongPassword, 403),
            (ApiError::InsufficientScope("profile"), 403),
            (ApiError::UserNotFound, 404),
            (ApiError::InvalidOtp, 400),
            (ApiError::Forbidden("admin"), 403),
            (ApiError::ClientNotFound, 404),
            (ApiError::AccountDisabled, 401),
            (ApiError::BuiltInClient, 403),
            (ApiError::PublicClient, 409),
            (
                ApiError::GrantRefused {
                    code: "invalid_grant",
                    detail: "x",
                },
                400,
            ),
            (ApiError::Throttled(Duration::from_secs(3)), 429),
            (ApiError::Unavailable("redis"), 503),
            (ApiError::Overloaded, 503),
            (ApiError::RequestTimeout, 408),
            (ApiError::Internal("secret cause".into()), 500),
        ];
        for (error, status) in cases {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
    }

    /// A refusal that reaches a JSON endpoint through the domain stays a
    /// client error with its OAuth code; failures keep their own statuses.
    #[test]
    fn grant_errors_keep_their_kind_through_the_domain() {
        let cases = [
            (GrantError::InvalidRequest("x"), 400, "invalid_request"),
            (GrantError::InvalidClient, 400, "invalid_client"),
            (GrantError::InvalidGrant("x"), 400, "invalid_grant"),
            (
                GrantError::UnauthorizedClient("x"),
                400,
                "unauthorized_client",
            ),
            (
                GrantError::UnsupportedGrantType,
                400,
                "unsupported_grant_type",
            ),
            (GrantError::InvalidScope("x"), 400, "invalid_scope"),
            (
                GrantError::Throttled(Duration::from_secs(3)),
                429,
                "too_many_requests",
            ),
            (
                GrantError::Store(StoreError::Unavailable {
                    backend: "redis",
                    reason: "down".into(),
                }),
                503,
                "backend_unavailable",
            ),
            (
                GrantError::Key(crate::crypto::keys::KeyError::Signing),
                500,
                "internal_error",
            ),
        ];
        for (error, status, code) in cases {
            let error = ApiError::from(DomainError::from(error));
            assert_eq!(error.parts().0.as_u16(), status, "{error:?}");
            assert_eq!(error.parts().1, code, "{error:?}");
        }
    }

    #[test]
    fn a_missing_session_or_consent_is_a_plain_404() {
        let error = ApiError::from(DomainError::NotFound("session"));
        assert_eq!(error.parts().0, StatusCode::NOT_FOUND);
        assert_eq!(error.parts().1, "not_found");
    }

    #[test]
    fn store_outage_is_503_and_internal_errors_hide_their_cause() {
        let outage: ApiError = StoreError::Unavailable {
            backend: "redis",
            reason: "connection refused".into(),
        }
        .into();
        assert_eq!(
            outage.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let response = ApiError::Internal("db path /secret".into()).into_response();
        assert!(response.extensions().get::<InternalCause>().is_some());
    }
}
