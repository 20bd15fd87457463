//! `/api/admin/clients`: client registration for holders of a user access
//! token with the `admin` scope whose user is an admin *now* (the role is
//! read from the store on every call; `tessera users set-role EMAIL admin`
//! makes the first).

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::clients::NewClient;
use crate::domain::scope;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::resource::Authenticated;
use crate::store::ClientRecord;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/clients", get(list_clients).post(post_client))
        .route("/clients/{id}", get(get_client).delete(delete_client))
}

/// A verified user token with the `admin` scope, of a user who is an admin
/// now. A token of an admin obtained by a third-party client lacks the scope
/// (third parties cannot be registered with it), so it is refused.
pub struct Admin(pub Authenticated);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = Authenticated::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if auth.claims.sid.is_none() || !auth.claims.has_scope(scope::ADMIN) {
            return Err(ApiError::InsufficientScope(scope::ADMIN).into_response());
        }
        state
            .users
            .require_admin(&auth.claims.sub)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        Ok(Self(auth))
    }
}

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
    ApiJson(body): ApiJson<NewClientBody>,
) -> Result<Response, ApiError> {
    let registered = state
        .clients
        .register(NewClient {
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
        })
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
        (status = 204, description = "Deleted"),
        crate::http::problems::AdminProblems,
        (status = 404, description = "No such client", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_client(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.clients.delete(&id).await? {
        tracing::info!(client_id = %id, "client deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::ClientNotFound)
    }
}
