//! [`OAuthError`]: the RFC 6749 §5.2 answer of the OAuth endpoints, and
//! how every domain error becomes one.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::InternalCause;
use crate::domain::GrantError;
use crate::domain::authorize::AuthorizeError;
use crate::domain::par::PushError;
use crate::store::StoreError;

/// An RFC 6749 §5.2 error of the OAuth endpoints: `{"error", "error_description"}`.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The client tried HTTP Basic: a 401 must then carry a Basic challenge.
    basic_attempted: bool,
    retry_after: Option<Duration>,
    cause: Option<String>,
    /// A nonce for the next DPoP proof (RFC 9449 §8), as `DPoP-Nonce`.
    dpop_nonce: Option<String>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            basic_attempted: false,
            retry_after: None,
            cause: None,
            dpop_nonce: None,
        }
    }

    /// `invalid_request` (400).
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Marks that the client used HTTP Basic (RFC 6749 §5.2: 401 + challenge).
    pub fn with_basic(mut self, attempted: bool) -> Self {
        self.basic_attempted = attempted;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<GrantError> for OAuthError {
    fn from(error: GrantError) -> Self {
        use StatusCode as S;
        match error {
            GrantError::InvalidRequest(d) => Self::new(S::BAD_REQUEST, "invalid_request", d),
            GrantError::InvalidClient => Self::new(
                S::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            ),
            GrantError::InvalidGrant(d) => Self::new(S::BAD_REQUEST, "invalid_grant", d),
            GrantError::UnauthorizedClient(d) => {
                Self::new(S::BAD_REQUEST, "unauthorized_client", d)
            }
            GrantError::UnsupportedGrantType => Self::new(
                S::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code, refresh_token or client_credentials",
            ),
            GrantError::InvalidScope(d) => Self::new(S::BAD_REQUEST, "invalid_scope", d),
            GrantError::InvalidDpopProof(d) => Self::new(S::BAD_REQUEST, "invalid_dpop_proof", d),
            GrantError::UseDpopNonce(nonce) => Self {
                dpop_nonce: Some(nonce),
                ..Self::new(
                    S::BAD_REQUEST,
                    "use_dpop_nonce",
                    "the DPoP proof must carry the server's nonce (DPoP-Nonce)",
                )
            },
            // RFC 6749 has no code for this: the client's error stays
            // `invalid_client`, the status and `Retry-After` say "wait".
            GrantError::Throttled(retry) => Self {
                retry_after: Some(retry),
                ..Self::new(
                    S::TOO_MANY_REQUESTS,
                    "invalid_client",
                    format!(
                        "too many failed client authentications; retry after {} s",
                        retry.as_secs()
                    ),
                )
            },
            GrantError::Store(StoreError::Unavailable { backend, .. }) => {
                metrics::counter!("tessera_backend_errors_total", "backend" => backend)
                    .increment(1);
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    format!("the {backend} backend is unavailable; try again shortly"),
                )
            }
            GrantError::Store(e) => Self {
                cause: Some(e.to_string()),
                ..Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "an internal error occurred",
                )
            },
            GrantError::Key(e) => Self {
                cause: Some(e.to_string()),
                ..Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "an internal error occurred",
                )
            },
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        GrantError::Store(error).into()
    }
}

/// A refused push at `/par` (RFC 9126 §2.3): what `/authorize` would have
/// refused becomes a 400 with the same error (a page's reason, which names
/// no value of the request, as `invalid_request`); an outage is a 503.
impl From<PushError> for OAuthError {
    fn from(error: PushError) -> Self {
        use StatusCode as S;
        match error {
            PushError::InvalidRequest(d) => Self::invalid_request(d),
            PushError::RequestNotSupported => Self::new(
                S::BAD_REQUEST,
                "request_not_supported",
                "request objects are not supported",
            ),
            PushError::InvalidDpopProof(d) => Self::new(S::BAD_REQUEST, "invalid_dpop_proof", d),
            // RFC 9126 has no code for this; the status and `Retry-After` say "wait".
            PushError::Throttled(retry) => Self {
                retry_after: Some(retry),
                ..Self::new(
                    S::TOO_MANY_REQUESTS,
                    "invalid_request",
                    format!(
                        "too many pushed requests from this address; retry after {} s",
                        retry.as_secs()
                    ),
                )
            },
            PushError::Authorize(AuthorizeError::Page(message)) => Self::invalid_request(message),
            PushError::Authorize(AuthorizeError::Redirect {
                error, description, ..
            }) => Self::new(S::BAD_REQUEST, error, description),
            PushError::Authorize(AuthorizeError::Store(e)) => e.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.status == StatusCode::UNAUTHORIZED && self.basic_attempted {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tessera\", charset=\"UTF-8\""),
            );
        }
        if let Some(retry) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&retry.as_secs().to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        if let Some(nonce) = self.dpop_nonce {
            set_dpop_nonce(headers, &nonce);
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(InternalCause(cause));
        }
        response
    }
}

/// `DPoP-Nonce` (RFC 9449 §8.1): the nonce the client's next proof carries.
pub fn set_dpop_nonce(headers: &mut axum::http::HeaderMap, nonce: &str) {
    if let Ok(value) = HeaderValue::from_str(nonce) {
        headers.insert(DPOP_NONCE, value);
    }
}

pub const DPOP_NONCE: header::HeaderName = header::HeaderName::from_static("dpop-nonce");

/// The request header a DPoP proof travels in (RFC 9449 §4.1).
pub const DPOP_HEADER: header::HeaderName = header::HeaderName::from_static("dpop");
