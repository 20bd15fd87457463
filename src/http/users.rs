//! `/api/users/*`: the endpoints of the original user service, same paths.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::clients::first_party_client;
use crate::domain::dpop::ProofRequest;
use crate::domain::users::{ProfileUpdate, Signup};
use crate::http::AppState;
use crate::http::error::{ApiError, set_dpop_nonce};
use crate::http::extract::{AccountToken, ApiJson, ClientAddr, UserToken, dpop_proof};
use crate::http::oauth::token_response;
use crate::store::UserRecord;

/// A user as the API shows it: never the password hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub fname: String,
    pub lname: String,
    pub gender: Option<String>,
    pub mobile: Option<String>,
    pub role: String,
    /// Whether the user proved control of the address with a mailed code.
    pub email_verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            email: u.email,
            fname: u.fname,
            lname: u.lname,
            gender: u.gender,
            mobile: u.mobile,
            role: u.role,
            email_verified: u.email_verified,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    email: String,
    password: String,
    fname: String,
    lname: String,
    gender: Option<String>,
    mobile: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    fname: Option<String>,
    lname: Option<String>,
    gender: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    old_password: String,
    new_password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MobileBody {
    mobile: String,
}

#[utoipa::path(
    post,
    path = "/api/users/signup",
    tag = "users",
    request_body = SignupBody,
    responses(
        (status = 201, description = "The new user", body = UserView),
        crate::http::problems::BodyProblems,
        (status = 409, description = "Email already registered", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many signups from this address", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable, or the password hasher is busy (Retry-After)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /api/users/signup` → 201 and the user.
pub async fn post_signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<SignupBody>,
) -> Result<Response, ApiError> {
    let signup = Signup {
        email: body.email,
        password: body.password,
        fname: body.fname,
        lname: body.lname,
        gender: body.gender,
        mobile: body.mobile,
    };
    let user = state.users.signup(signup, client).await?;
    tracing::info!(user_id = %user.id, "user signed up");
    Ok((StatusCode::CREATED, Json(UserView::from(user))).into_response())
}

#[utoipa::path(
    post,
    path = "/api/users/login",
    tag = "users",
    request_body = LoginBody,
    responses(
        (status = 200, description = "A token response", body = crate::http::oauth::TokenResponse),
        crate::http::problems::BodyProblems,
        (status = 401, description = "Wrong email or password", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failures", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /api/users/login` → a token response, as from `/token`.
pub async fn post_login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    // The proof first: a bad one costs no password check.
    let proven = state
        .dpop
        .verify_for(
            &first_party_client(),
            ProofRequest {
                proof: dpop_proof(&headers)?,
                method: "POST",
                path: "/api/users/login",
            },
        )
        .await?;
    let jkt = proven.as_ref().map(|p| p.jkt.as_str());
    let issued = state
        .users
        .login(&body.email, &body.password, client, jkt)
        .await?;
    metrics::counter!("tessera_tokens_issued_total", "grant" => "login").increment(1);
    let mut response = token_response(issued);
    if proven.is_some()
        && let Some(nonce) = state.dpop.fresh_nonce()
    {
        set_dpop_nonce(response.headers_mut(), &nonce);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/users/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserView),
        crate::http::problems::UserTokenProblems,
    )
)]
/// `GET /api/users/me`.
pub async fn get_me(
    State(state): State<AppState>,
    token: UserToken,
) -> Result<Json<UserView>, ApiError> {
    let user = state.users.profile(token.user_id()).await?;
    Ok(Json(user.into()))
}

#[utoipa::path(
    put,
    path = "/api/users/updateusers",
    tag = "users",
    request_body = ProfileBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserView),
        crate::http::problems::BodyProblems,
        crate::http::problems::UserTokenProblems,
    )
)]
/// `PUT /api/users/updateusers`: any of `fname`, `lname`, `gender`.
pub async fn put_updateusers(
    State(state): State<AppState>,
    token: AccountToken,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Json<UserView>, ApiError> {
    let update = ProfileUpdate {
        fname: body.fname,
        lname: body.lname,
        gender: body.gender,
    };
    let user = state.users.update_profile(token.user_id(), update).await?;
    Ok(Json(user.into()))
}

#[utoipa::path(
    put,
    path = "/api/users/updatepassword",
    tag = "users",
    request_body = PasswordBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed; every session signed out", body = crate::http::problems::StatusBody),
        crate::http::problems::BodyProblems,
        crate::http::problems::UserTokenProblems,
        (status = 429, description = "Too many wrong current passwords for this account", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// `PUT /api/users/updatepassword`: logs the user out everywhere.
pub async fn put_updatepassword(
    State(state): State<AppState>,
    token: AccountToken,
    ClientAddr(ip): ClientAddr,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .users
        .change_password(token.user_id(), &body.old_password, &body.new_password, ip)
        .await?;
    tracing::info!(user_id = %token.user_id(), "password changed; sessions revoked");
    Ok(Json(serde_json::json!({
        "status": "password_updated",
        "detail": "the password was changed and every session was signed out"
    })))
}

#[utoipa::path(
    put,
    path = "/api/users/updatemobile",
    tag = "users",
    request_body = MobileBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserView),
        crate::http::problems::BodyProblems,
        crate::http::problems::UserTokenProblems,
    )
)]
/// `PUT /api/users/updatemobile`.
pub async fn put_updatemobile(
    State(state): State<AppState>,
    token: AccountToken,
    ApiJson(body): ApiJson<MobileBody>,
) -> Result<Json<UserView>, ApiError> {
    let user = state
        .users
        .update_mobile(token.user_id(), &body.mobile)
        .await?;
    Ok(Json(user.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotBody {
    email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    email: String,
    otp: String,
    new_password: String,
}

#[utoipa::path(
    post,
    path = "/api/users/forgotpasswords",
    tag = "users",
    request_body = ForgotBody,
    responses(
        (status = 202, description = "Accepted, whether or not the account exists", body = crate::http::problems::StatusBody),
        crate::http::problems::BodyProblems,
        (status = 429, description = "Rate limited", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /api/users/forgotpasswords` → 202 with the same body whether or not
/// the account exists.
pub async fn post_forgotpasswords(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<ForgotBody>,
) -> Result<Response, ApiError> {
    state.otp.request(&body.email, client).await?;
    let body = serde_json::json!({
        "status": "accepted",
        "detail": "if an account exists for this email, a code is on its way"
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/users/resetpasswordotps",
    tag = "users",
    request_body = ResetBody,
    responses(
        (status = 200, description = "Password reset; every session signed out", body = crate::http::problems::StatusBody),
        crate::http::problems::BodyProblems,
        (status = 429, description = "Rate limited", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /api/users/resetpasswordotps` → 200; `invalid_otp` for any bad code.
pub async fn post_resetpasswordotps(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .otp
        .reset(&body.email, &body.otp, &body.new_password, client)
        .await?;
    Ok(Json(serde_json::json!({
        "status": "password_reset",
        "detail": "the password was changed and every session was signed out"
    })))
}

// The bodies that carry a password or a one-time code print without it:
// a `{:?}` in a log line must never leak one.
impl std::fmt::Debug for SignupBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupBody")
            .field("email", &self.email)
            .field("fname", &self.fname)
            .field("lname", &self.lname)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PasswordBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordBody").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ResetBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetBody")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_passwords_or_codes() {
        let signup: SignupBody = serde_json::from_str(
            r#"{"email":"a@example.com","password":"hunter2hunter2","fname":"A","lname":"B"}"#,
        )
        .unwrap();
        let login: LoginBody =
            serde_json::from_str(r#"{"email":"a@example.com","password":"hunter2hunter2"}"#)
                .unwrap();
        let change: PasswordBody = serde_json::from_str(
            r#"{"old_password":"hunter2hunter2","new_password":"hunter3hunter3"}"#,
        )
        .unwrap();
        let reset: ResetBody = serde_json::from_str(
            r#"{"email":"a@example.com","otp":"123456","new_password":"hunter3hunter3"}"#,
        )
        .unwrap();
        let printed = format!("{signup:?} {login:?} {change:?} {reset:?}");
        for secret in ["hunter2", "hunter3", "123456"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("a@example.com"));
    }
}
