//! Discovery: RFC 8414 metadata and the RFC 7517 JWK Set.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::scope;
use crate::http::AppState;

/// Discovery documents may be cached for `TESSERA_JWKS_MAX_AGE`; key
/// rotation pre-publishes new keys for longer than that (checked at start).
fn cacheable(body: serde_json::Value, max_age: u64) -> Response {
    with_max_age(Json(body).into_response(), max_age)
}

fn with_max_age(mut response: Response, max_age: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`.
pub async fn get_metadata(State(state): State<AppState>) -> Response {
    let issuer = &state.config.issuer;
    let client_auth = ["client_secret_basic", "client_secret_post", "none"];
    let confidential_auth = ["client_secret_basic", "client_secret_post"];
    cacheable(
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            // RFC 9126 §5.
            "pushed_authorization_request_endpoint": format!("{issuer}/par"),
            "require_pushed_authorization_requests": state.config.require_par,
            "revocation_endpoint": format!("{issuer}/revoke"),
            "introspection_endpoint": format!("{issuer}/introspect"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": state.keys.current().id_token_algs(),
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
                "sid", "amr", "name", "given_name", "family_name", "gender", "updated_at",
                "email", "email_verified", "phone_number", "phone_number_verified"
            ],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            // About request objects by reference (OIDC Discovery §3), which
            // are not supported; PAR's request_uri is announced above.
            "request_uri_parameter_supported": false,
            "require_request_uri_registration": false,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "frontchannel_logout_supported": false,
            "token_endpoint_auth_methods_supported": client_auth,
            "revocation_endpoint_auth_methods_supported": client_auth,
            "introspection_endpoint_auth_methods_supported": confidential_auth,
            "scopes_supported": scope::SUPPORTED,
            "access_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            // RFC 9449 §5.1.
            "dpop_signing_alg_values_supported": tessera_resource::dpop::PROOF_ALGORITHMS,
        }),
        state.config.jwks_max_age,
    )
}

/// `GET /.well-known/jwks.json`: every key that may have signed a live token.
pub async fn get_jwks(State(state): State<AppState>) -> Response {
    cacheable(
        state.keys.current().jwks().clone(),
        state.config.jwks_max_age,
    )
}
