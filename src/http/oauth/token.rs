//! `POST /token` (RFC 6749 §3.2).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::domain::dpop::ProofRequest;
use crate::domain::grants::Grant;
use crate::http::AppState;
use crate::http::error::{OAuthError, set_dpop_nonce};
use crate::http::extract::{ClientAddr, OAuthForm, dpop_proof};
use crate::http::oauth::client_auth::authenticated_client;
use crate::http::oauth::token_response;

pub async fn post_token(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Response, OAuthError> {
    let (client, _) = authenticated_client(&state, &headers, &params, from).await?;
    let grant = Grant::parse(&params)?;
    let grant_type = grant.name();
    let proven = state
        .dpop
        .verify_for(
            &client,
            ProofRequest {
                proof: dpop_proof(&headers)?,
                method: "POST",
                path: "/token",
            },
        )
        .await?;
    let issued = state.grants.apply(&client, grant, proven.as_ref()).await?;
    metrics::counter!("tessera_tokens_issued_total", "grant" => grant_type).increment(1);
    tracing::info!(client_id = %client.id, grant_type, dpop = proven.is_some(), "token issued");
    let mut response = token_response(issued);
    // RFC 9449 §8.2: the nonce for the client's next proof.
    if proven.is_some()
        && let Some(nonce) = state.dpop.fresh_nonce()
    {
        set_dpop_nonce(response.headers_mut(), &nonce);
    }
    Ok(response)
}
