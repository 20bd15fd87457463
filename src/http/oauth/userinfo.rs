//! `GET /userinfo` and `POST /userinfo` (OpenID Connect Core §5.3): the
//! claims of the token's user that its scopes release.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use crate::domain::{oidc, scope};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::parse_form;
use crate::resource::{
    AccessClaims, AuthRejection, AuthScheme, Authenticated, BearerRejection, DpopRejection,
    VerifyError,
};

/// `GET /userinfo`: the token in the `Authorization` header (Bearer, or
/// DPoP with a proof for a DPoP-bound token).
pub async fn get_userinfo(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    from_header(&state, Method::GET, &uri, &headers).await
}

async fn from_header(
    state: &AppState,
    method: Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    match Authenticated::from_request(&method, uri, headers, &state.verifier).await {
        Ok(auth) => answer(state, auth.claims).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// `POST /userinfo`: the token in the header or, form-encoded, in the
/// `access_token` field (RFC 6750 §2.2) — never both (§2).
pub async fn post_userinfo(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let in_body = match is_form {
        true => match parse_form(&body) {
            Ok(params) => params.get("access_token").cloned(),
            Err(_) => return invalid("malformed form body"),
        },
        false => None,
    };
    let in_header = headers.contains_key(header::AUTHORIZATION);
    match (in_body, in_header) {
        (Some(_), true) => invalid("send the token once: in the header or the body"),
        (Some(token), false) => match state.verifier.verify(&token).await {
            // A form field is a bearer token's way (RFC 6750 §2.2): a
            // DPoP-bound token never travels without its proof.
            Ok(claims) if claims.cnf.is_some() => {
                AuthRejection::Dpop(DpopRejection::Token(DpopRejection::BOUND_TOKEN_AS_BEARER))
                    .into_response()
            }
            Ok(claims) => answer(&state, claims).await,
            Err(e) => BearerRejection(e).into_response(),
        },
        (None, _) => from_header(&state, Method::POST, &uri, &headers).await,
    }
}

fn invalid(why: &'static str) -> Response {
    BearerRejection(VerifyError::Invalid(why)).into_response()
}

async fn answer(state: &AppState, claims: AccessClaims) -> Response {
    if claims.sid.is_none() || !claims.has_scope(scope::OPENID) {
        // A bound token only ever arrives under the DPoP scheme.
        let scheme = match claims.cnf {
            Some(_) => AuthScheme::Dpop,
            None => AuthScheme::Bearer,
        };
        return crate::http::extract::insufficient_scope(scope::OPENID, scheme);
    }
    let user = match state.users.profile(&claims.sub).await {
        Ok(user) => user,
        // The token's user is gone: the token is as good as revoked.
        Err(crate::domain::DomainError::UserNotFound) => {
            return invalid("the token's user no longer exists");
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut response = Json(oidc::user_claims(&user, &claims.scope)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
