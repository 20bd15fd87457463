//! The OAuth 2.0 endpoints and the shapes RFC 6749 fixes.

pub mod authorize;
pub mod client_auth;
pub mod introspect;
pub mod logout;
pub mod metadata;
pub mod par;
pub mod revoke;
pub mod token;
pub mod userinfo;

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::tokens::IssuedTokens;

/// RFC 6749 §5.1 successful token response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OpenID Connect ID token, when the scope has `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// A token response with `Cache-Control: no-store` and `Pragma: no-cache`.
pub fn token_response(issued: IssuedTokens) -> Response {
    let body = TokenResponse {
        access_token: issued.access_token,
        // RFC 9449 §5: a DPoP-bound access token is of type DPoP.
        token_type: if issued.dpop_bound { "DPoP" } else { "Bearer" },
        expires_in: issued.expires_in,
        scope: issued.scope,
        refresh_token: issued.refresh_token.map(|t| t.expose().to_owned()),
        id_token: issued.id_token,
    };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
