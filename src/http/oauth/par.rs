//! `POST /par`: pushed authorization requests (RFC 9126). The client
//! authenticates as at `/token`, the request is validated by the rules of
//! `/authorize`, and the answer is the `request_uri` to send the browser
//! to `/authorize` with.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::dpop::ProofRequest;
use crate::domain::par::{PushError, bound_key, check_push_form};
use crate::http::AppState;
use crate::http::error::OAuthError;
use crate::http::extract::{ClientAddr, OAuthForm, dpop_proof};
use crate::http::oauth::client_auth::authenticated_client;

/// RFC 9126 §2.2 success.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushedResponse {
    /// `urn:ietf:params:oauth:request_uri:` and 256 random bits; single use.
    pub request_uri: String,
    /// Seconds the request_uri stays usable (60).
    pub expires_in: i64,
}

/// `POST /par`: 201 with the `request_uri`, or an RFC 6749 §5.2 error.
pub async fn post_par(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Response, OAuthError> {
    // The form's client_id, when there is one, is the authenticated
    // client's: `presented_client` refuses one that differs from Basic,
    // and with client_secret_post or none it is what authenticates.
    let (client, _) = authenticated_client(&state, &headers, &params, from).await?;
    state.authorizer.admit_push(&client, from).await?;
    check_push_form(&params)?;
    let proven = state
        .dpop
        .verify(ProofRequest {
            proof: dpop_proof(&headers)?,
            method: "POST",
            path: "/par",
        })
        .await?;
    let dpop_jkt = bound_key(proven, params.get("dpop_jkt").map(String::as_str))?;
    let pushed = state
        .authorizer
        .push(&client, &params, dpop_jkt)
        .await
        .map_err(PushError::from)?;
    tracing::info!(client_id = %client.id, "authorization request pushed");
    let body = PushedResponse {
        request_uri: pushed.request_uri.expose().to_owned(),
        expires_in: pushed.expires_in,
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
