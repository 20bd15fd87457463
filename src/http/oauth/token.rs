//! `POST /token` (RFC 6749 §3.2).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::domain::grants::Grant;
use crate::http::AppState;
use crate::http::error::OAuthError;
use crate::http::extract::{ClientAddr, OAuthForm};
use crate::http::oauth::client_auth::presented_client;
use crate::http::oauth::token_response;

pub async fn post_token(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Response, OAuthError> {
    let presented = presented_client(&headers, &params)?;
    let client = state
        .clients
        .authenticate(&presented.credentials, from)
        .await
        .map_err(|e| OAuthError::from(e).with_basic(presented.basic))?;
    let grant = Grant::parse(&params)?;
    let grant_type = grant.name();
    let issued = state.grants.apply(&client, grant).await?;
    metrics::counter!("tessera_tokens_issued_total", "grant" => grant_type).increment(1);
    tracing::info!(client_id = %client.id, grant_type, "token issued");
    Ok(token_response(issued))
}
