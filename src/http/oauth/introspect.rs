//! `POST /introspect` (RFC 7662).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::grants::GrantError;
use crate::http::AppState;
use crate::http::error::OAuthError;
use crate::http::extract::{ClientAddr, OAuthForm};
use crate::http::oauth::client_auth::authenticated_client;

/// Any confidential client may introspect any token (resource servers do);
/// public clients cannot. Anything not live is `{"active": false}`.
pub async fn post_introspect(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Response, OAuthError> {
    let (client, basic) = authenticated_client(&state, &headers, &params, from).await?;
    if client.is_public() {
        return Err(OAuthError::from(GrantError::InvalidClient).with_basic(basic));
    }
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let body = match state.tokens.introspect(&state.verifier, token).await? {
        Some(info) => {
            let mut body = json!({
                "active": true,
                "scope": info.scope,
                "client_id": info.client_id,
                "sub": info.sub,
                "exp": info.exp,
                "iat": info.iat,
                "iss": state.config.issuer,
                "token_type": info.token_type,
            });
            // RFC 9449 §6.2: the key a bound token (or family) needs.
            if let Some(jkt) = info.jkt {
                body["cnf"] = json!({ "jkt": jkt });
            }
            body
        }
        None => json!({"active": false}),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
