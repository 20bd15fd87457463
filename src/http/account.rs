//! `/api/users/sessions`, `/api/users/consents`, email verification and
//! `DELETE /api/users/me`: self-service with a user token that has the
//! `account` scope (API.md §10). The rules live in `domain::account`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::UnixTime;
use crate::domain::account::{ConsentInfo, SessionInfo};
use crate::domain::audit::Actor;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AccountToken, ApiJson, ClientAddr};
use crate::http::users::UserView;

/// A time as RFC 3339, as every time of the user API.
fn rfc3339(at: UnixTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A session (refresh-token family) as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The family id (the `fid` claim of its access tokens).
    pub id: String,
    pub client_id: String,
    /// The client's name, or its id when the client was deleted.
    pub client_name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// The last refresh (the creation if never refreshed).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_used_at: OffsetDateTime,
    /// Whether the token of this request came from this session.
    pub current: bool,
}

impl SessionView {
    pub(crate) fn new(session: SessionInfo, current_family: Option<&str>) -> Self {
        Self {
            current: current_family == Some(session.id.as_str()),
            id: session.id,
            client_id: session.client_id,
            client_name: session.client_name,
            created_at: rfc3339(session.created_at),
            last_used_at: rfc3339(session.last_used_at),
        }
    }
}

/// A client the user approved.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    pub client_id: String,
    /// The client's name, or its id when the client was deleted.
    pub client_name: String,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub granted_at: OffsetDateTime,
}

impl From<ConsentInfo> for ConsentView {
    fn from(c: ConsentInfo) -> Self {
        Self {
            client_id: c.client_id,
            client_name: c.client_name,
            scopes: c.scopes,
            granted_at: rfc3339(c.granted_at),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailBody {
    otp: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountBody {
    password: String,
}

/// A path id that does not even decode names nothing: 404, as an unknown id.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id).map_err(|_| ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/users/sessions",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's live sessions, newest first", body = [SessionView]),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `GET /api/users/sessions`.
pub async fn get_sessions(
    State(state): State<AppState>,
    token: AccountToken,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let current = token.0.claims.family();
    let sessions = state.account.sessions(token.user_id()).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView::new(s, current))
            .collect(),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/users/sessions/{id}",
    tag = "account",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session (family) id")),
    responses(
        (status = 204, description = "The session was ended"),
        (status = 404, description = "No such live session of this user (not_found)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `DELETE /api/users/sessions/{id}`: 404 alike for an unknown id and for
/// another user's session.
pub async fn delete_session(
    State(state): State<AppState>,
    token: AccountToken,
    ClientAddr(ip): ClientAddr,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    state
        .account
        .revoke_session(token.user_id(), &id, Actor::Own { ip })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/users/sessions",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out everywhere: every session and access token of the user ended"),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `DELETE /api/users/sessions`: sign out everywhere.
pub async fn delete_sessions(
    State(state): State<AppState>,
    token: AccountToken,
    ClientAddr(ip): ClientAddr,
) -> Result<StatusCode, ApiError> {
    state
        .account
        .sign_out_everywhere(token.user_id(), Actor::Own { ip })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/users/consents",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The clients the user approved, latest first", body = [ConsentView]),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `GET /api/users/consents`.
pub async fn get_consents(
    State(state): State<AppState>,
    token: AccountToken,
) -> Result<Json<Vec<ConsentView>>, ApiError> {
    let consents = state.account.consents(token.user_id()).await?;
    Ok(Json(consents.into_iter().map(ConsentView::from).collect()))
}

#[utoipa::path(
    delete,
    path = "/api/users/consents/{client_id}",
    tag = "account",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client whose consent to revoke")),
    responses(
        (status = 204, description = "The consent was forgotten and the client's sessions of the user ended"),
        (status = 404, description = "No consent of this user to that client (not_found)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `DELETE /api/users/consents/{client_id}`.
pub async fn delete_consent(
    State(state): State<AppState>,
    token: AccountToken,
    ClientAddr(ip): ClientAddr,
    client_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let client_id = path_id(client_id)?;
    state
        .account
        .revoke_consent(token.user_id(), &client_id, Actor::Own { ip })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/users/verifyemail",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A code is on its way to the user's address", body = crate::http::problems::StatusBody),
        (status = 429, description = "Rate limited (shared with password-reset codes)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `POST /api/users/verifyemail` → 202; mails a 6-digit code.
pub async fn post_verifyemail(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    token: AccountToken,
) -> Result<Response, ApiError> {
    state
        .account
        .request_email_verification(token.user_id(), client)
        .await?;
    let body = serde_json::json!({
        "status": "accepted",
        "detail": "a verification code is on its way to the account's email address"
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/users/verifyemailotps",
    tag = "account",
    request_body = VerifyEmailBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user, with email_verified true", body = UserView),
        (status = 400, description = "Wrong, expired or used code (invalid_otp), or malformed JSON", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::BodyProblems,
        (status = 429, description = "Too many tries", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `POST /api/users/verifyemailotps`: `invalid_otp` for any bad code.
pub async fn post_verifyemailotps(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    token: AccountToken,
    ApiJson(body): ApiJson<VerifyEmailBody>,
) -> Result<Json<UserView>, ApiError> {
    let user = state
        .account
        .verify_email(token.user_id(), &body.otp, client)
        .await?;
    Ok(Json(user.into()))
}

#[utoipa::path(
    delete,
    path = "/api/users/me",
    tag = "account",
    request_body = DeleteAccountBody,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The account and every token, consent and code of it are gone"),
        (status = 401, description = "Wrong password (invalid_credentials), or a missing, invalid or revoked token", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::BodyProblems,
        (status = 429, description = "Too many wrong passwords (the login budget)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `DELETE /api/users/me`: deletes the account after checking its password.
pub async fn delete_me(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    token: AccountToken,
    ApiJson(body): ApiJson<DeleteAccountBody>,
) -> Result<StatusCode, ApiError> {
    state
        .account
        .delete_account(token.user_id(), &body.password, client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// The bodies that carry a password or a one-time code print without it.
impl std::fmt::Debug for VerifyEmailBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyEmailBody").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DeleteAccountBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeleteAccountBody").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_passwords_or_codes() {
        let verify: VerifyEmailBody = serde_json::from_str(r#"{"otp":"123456"}"#).unwrap();
        let delete: DeleteAccountBody =
            serde_json::from_str(r#"{"password":"hunter2hunter2"}"#).unwrap();
        let printed = format!("{verify:?} {delete:?}");
        assert!(
            !printed.contains("123456") && !printed.contains("hunter2"),
            "{printed}"
        );
    }
}
