//! `/api/admin/clients`: register, list, show, change, rotate the secret
//! of, and delete OAuth clients.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use super::Admin;
use crate::domain::clients::{ClientPatch, NewClient};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ClientAddr, OptionalApiJson};
use crate::store::ClientRecord;

/// A client as the admin API shows it: never the secret's digest.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub first_party: bool,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub access_token_ttl: Option<u64>,
    pub refresh_token_ttl: Option<u64>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// RFC 9449 §5.2: every access token of the client is DPoP-bound.
    pub dpop_bound_access_tokens: bool,
    /// RFC 9126 §6: the client must push its authorization requests to `/par`.
    pub require_pushed_authorization_requests: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<ClientRecord> for ClientView {
    fn from(c: ClientRecord) -> Self {
        Self {
            public: c.is_public(),
            client_id: c.id,
            name: c.name,
            first_party: c.first_party,
            grant_types: c.grant_types,
            redirect_uris: c.redirect_uris,
            scopes: c.scopes,
            access_token_ttl: c.access_token_ttl,
            refresh_token_ttl: c.refresh_token_ttl,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            backchannel_logout_uri: c.backchannel_logout_uri,
            dpop_bound_access_tokens: c.dpop_bound_access_tokens,
            require_pushed_authorization_requests: c.require_pushed_authorization_requests,
            created_at: c.created_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClientBody {
    name: String,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    first_party: bool,
    grant_types: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    scopes: Vec<String>,
    access_token_ttl: Option<u64>,
    refresh_token_ttl: Option<u64>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    backchannel_logout_uri: Option<String>,
    /// RFC 9449 §5.2 (default false).
    #[serde(default)]
    dpop_bound_access_tokens: bool,
    /// RFC 9126 §6 (default false).
    #[serde(default)]
    require_pushed_authorization_requests: bool,
}

#[utoipa::path(
    get,
    path = "/api/admin/clients",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every client", body = Vec<ClientView>),
        crate::http::problems::AdminProblems,
    )
)]
pub async fn list_clients(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    let clients = state.clients.list().await?;
    Ok(Json(clients.into_iter().map(ClientView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/api/admin/clients",
    tag = "admin",
    request_body = NewClientBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The client, with client_secret shown once for confidential clients", body = ClientView),
        crate::http::problems::BodyProblems,
        crate::http::problems::AdminProblems,
    )
)]
/// 201 with the client and, for confidential clients, `client_secret` — shown this once.
pub async fn post_client(
    State(state): State<AppState>,
    admin: Admin,
    ClientAddr(ip): ClientAddr,
    ApiJson(body): ApiJson<NewClientBody>,
) -> Result<Response, ApiError> {
    let registered = state
        .clients
        .register(
            NewClient {
                name: body.name,
                public: body.public,
                first_party: body.first_party,
                grant_types: body.grant_types,
                redirect_uris: body.redirect_uris,
                scopes: body.scopes,
                access_token_ttl: body.access_token_ttl,
                refresh_token_ttl: body.refresh_token_ttl,
                post_logout_redirect_uris: body.post_logout_redirect_uris,
                backchannel_logout_uri: body.backchannel_logout_uri,
                dpop_bound_access_tokens: body.dpop_bound_access_tokens,
                require_pushed_authorization_requests: body.require_pushed_authorization_requests,
            },
            admin.actor(ip),
        )
        .await?;
    tracing::info!(client_id = %registered.client.id, by = %admin.0.claims.sub, "client registered");
    let mut view = serde_json::to_value(ClientView::from(registered.client))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(secret) = registered.secret {
        view["client_secret"] = serde_json::Value::String(secret);
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/admin/clients/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The client id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The client", body = ClientView),
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such client", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_client(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<ClientView>, ApiError> {
    let client = state
        .clients
        .get(&id)
        .await?
        .ok_or(ApiError::ClientNotFound)?;
    Ok(Json(client.into()))
}

#[utoipa::path(
    delete,
    path = "/api/admin/clients/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The client id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; its refresh families are revoked"),
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such client", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// 204; the client's refresh families (and their access tokens) are revoked.
pub async fn delete_client(
    State(state): State<AppState>,
    admin: Admin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.clients.delete(&id, admin.actor(ip)).await?;
    tracing::info!(client_id = %id, "client deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `Some(value)` for a field that is present (even `null`), so that a
/// PATCH tells "clear it" (`null`) from "leave it" (absent).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A change of a client: any of these settings; `null` clears
/// `backchannel_logout_uri` and `access_token_ttl`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatchBody {
    name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    backchannel_logout_uri: Option<Option<String>>,
    scopes: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    access_token_ttl: Option<Option<u64>>,
    dpop_bound_access_tokens: Option<bool>,
    require_pushed_authorization_requests: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/api/admin/clients/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The client id")),
    request_body = ClientPatchBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed client", body = ClientView),
        crate::http::problems::BodyProblems,
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such client", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// 200 with the client. The rules of registration apply to the result; an
/// empty body is 422. Lower scopes and grant types apply to new grants; a
/// client that loses `refresh_token` loses its refresh families at once.
pub async fn patch_client(
    State(state): State<AppState>,
    admin: Admin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ClientPatchBody>,
) -> Result<Json<ClientView>, ApiError> {
    let patch = ClientPatch {
        name: body.name,
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        backchannel_logout_uri: body.backchannel_logout_uri,
        scopes: body.scopes,
        grant_types: body.grant_types,
        access_token_ttl: body.access_token_ttl,
        dpop_bound_access_tokens: body.dpop_bound_access_tokens,
        require_pushed_authorization_requests: body.require_pushed_authorization_requests,
    };
    let client = state.clients.update(&id, patch, admin.actor(ip)).await?;
    Ok(Json(client.into()))
}

/// A secret rotation: how long the old secret keeps working (no body, or
/// `{}`, for none).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretBody {
    /// Seconds (default 0, at most 2592000: 30 days).
    #[serde(default)]
    grace_seconds: u64,
}

/// The new secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewSecretView {
    client_secret: String,
}

#[utoipa::path(
    post,
    path = "/api/admin/clients/{id}/secret",
    tag = "admin",
    params(("id" = String, Path, description = "The client id")),
    request_body = RotateSecretBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new secret, shown once", body = NewSecretView),
        crate::http::problems::BodyProblems,
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such client", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A public client has no secret (`public_client`)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
/// 200 `{client_secret}`; the old secret keeps working `grace_seconds`.
pub async fn post_client_secret(
    State(state): State<AppState>,
    admin: Admin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<String>,
    OptionalApiJson(body): OptionalApiJson<RotateSecretBody>,
) -> Result<Response, ApiError> {
    let client_secret = state
        .clients
        .rotate_secret(&id, body.grace_seconds, admin.actor(ip))
        .await?;
    tracing::info!(client_id = %id, grace = body.grace_seconds, "client secret rotated");
    let mut response = Json(NewSecretView { client_secret }).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
