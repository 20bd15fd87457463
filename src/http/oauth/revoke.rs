//! `POST /revoke` (RFC 7009).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::AppState;
use crate::http::error::OAuthError;
use crate::http::extract::{ClientAddr, OAuthForm};
use crate::http::oauth::client_auth::authenticated_client;

/// 200 for every token the client may revoke, including unknown and
/// already-dead ones (§2.2); `token_type_hint` is optional and tokens are
/// recognised by their shape.
pub async fn post_revoke(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Response, OAuthError> {
    let (client, _) = authenticated_client(&state, &headers, &params, from).await?;
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    state.tokens.revoke(&state.verifier, &client, token).await?;
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
