//! `GET /userinfo` and `POST /userinfo` (OpenID Connect Core §5.3): the
//! claims of the token's user that its scopes release.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::domain::{oidc, scope};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::parse_form;
use crate::resource::{BearerRejection, VerifyError};

/// `GET /userinfo`: the token in the `Authorization` header.
pub async fn get_userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match bearer(&headers) {
        Ok(token) => answer(&state, &token).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// `POST /userinfo`: the token in the header or, form-encoded, in the
/// `access_token` field (RFC 6750 §2.2) — never both (§2).
pub async fn post_userinfo(
    State(state): State<AppState>,
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
        (Some(token), false) => answer(&state, &token).await,
        (None, _) => match bearer(&headers) {
            Ok(token) => answer(&state, &token).await,
            Err(rejection) => rejection.into_response(),
        },
    }
}

fn invalid(why: &'static str) -> Response {
    BearerRejection(VerifyError::Invalid(why)).into_response()
}

fn bearer(headers: &HeaderMap) -> Result<String, BearerRejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let missing = || BearerRejection(VerifyError::Invalid("missing bearer token"));
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(missing());
    };
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    Ok(token.trim().to_owned())
}

async fn answer(state: &AppState, token: &str) -> Response {
    let claims = match state.verifier.verify(token).await {
        Ok(claims) => claims,
        Err(e) => return BearerRejection(e).into_response(),
    };
    if claims.sid.is_none() || !claims.has_scope(scope::OPENID) {
        return ApiError::InsufficientScope(scope::OPENID).into_response();
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
