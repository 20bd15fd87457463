//! `/api/admin/users`: list (email prefix, keyset pages), show, change the
//! role or disabled state, delete; a user's sessions (through the account
//! service, as the user's own self-service).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Admin;
use crate::domain::admin::UserListing;
use crate::http::AppState;
use crate::http::account::SessionView;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ClientAddr, listing_params};
use crate::store::{AccountChange, UserRecord};

/// A user as an admin sees it: the profile, role and state; never the hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUserView {
    pub id: String,
    pub email: String,
    pub fname: String,
    pub lname: String,
    pub gender: Option<String>,
    pub mobile: Option<String>,
    pub role: String,
    pub email_verified: bool,
    /// Disabled by an administrator: cannot sign in, refresh or reset.
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<UserRecord> for AdminUserView {
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
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// One page of users.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub items: Vec<AdminUserView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/admin/users",
    tag = "admin",
    params(
        ("q" = Option<String>, Query, description = "Email prefix (case-insensitive)"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of users, in email order", body = UserPage),
        (status = 422, description = "A parameter is invalid (unknown, repeated, out of range, or not a cursor)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::AdminProblems,
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(query): RawQuery,
) -> Result<Json<UserPage>, ApiError> {
    let mut params = listing_params(query.as_deref(), &["q", "limit", "cursor"])?;
    let page = state
        .admin
        .list_users(&UserListing {
            q: params.remove("q"),
            limit: params.remove("limit"),
            cursor: params.remove("cursor"),
        })
        .await?;
    Ok(Json(UserPage {
        items: page.items.into_iter().map(AdminUserView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/api/admin/users/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The user id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = AdminUserView),
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such user", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<AdminUserView>, ApiError> {
    Ok(Json(state.admin.user(&id).await?.into()))
}

/// A change of a user: the role, the disabled state, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchBody {
    role: Option<String>,
    disabled: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/api/admin/users/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The user id")),
    request_body = UserPatchBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed user", body = AdminUserView),
        crate::http::problems::BodyProblems,
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such user", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// 200 with the user. Disabling ends every session of the user at once
/// (credential epoch); an admin cannot change their own role or state.
pub async fn patch_user(
    State(state): State<AppState>,
    admin: Admin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserPatchBody>,
) -> Result<Json<AdminUserView>, ApiError> {
    let change = AccountChange {
        role: body.role,
        disabled: body.disabled,
    };
    let user = state
        .admin
        .update_user(&id, change, admin.actor(ip))
        .await?;
    tracing::info!(user_id = %id, by = %admin.0.claims.sub, "user changed by an admin");
    Ok(Json(user.into()))
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The user id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The user and every token, consent, code and session of theirs are gone"),
        (status = 422, description = "The admin's own account", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such user", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// 204: deleted as the user's own deletion does, without a password.
pub async fn delete_user(
    State(state): State<AppState>,
    admin: Admin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.account.delete_user(&id, admin.actor(ip)).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(crate::domain::DomainError::UserNotFound.into()),
    }
}

#[utoipa::path(
    get,
    path = "/api/admin/users/{id}/sessions",
    tag = "admin",
    params(("id" = String, Path, description = "The user id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's live sessions, newest first", body = [SessionView]),
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such user", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_user_sessions(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    state.admin.user(&id).await?;
    let sessions = state.account.sessions(&id).await?;
    let current = admin.0.claims.family();
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView::new(s, current))
            .collect(),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}/sessions",
    tag = "admin",
    params(("id" = String, Path, description = "The user id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session and access token of the user ended (credential epoch moved)"),
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such user", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_user_sessions(
    State(state): State<AppState>,
    admin: Admin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.admin.user(&id).await?;
    state
        .account
        .sign_out_everywhere(&id, admin.actor(ip))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
