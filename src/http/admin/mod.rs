//! `/api/admin`: users, clients and audit events, for holders of a user
//! access token with the `admin` scope whose user is an admin *now* (the
//! role is read from the store on every call; `tessera users set-role EMAIL
//! admin` or `TESSERA_BOOTSTRAP_ADMIN_EMAIL` makes the first).
//!
//! - `clients.rs`: `/clients` (register, list, show, change, rotate the
//!   secret, delete);
//! - `users.rs`: `/users` (list with an email prefix, show, change role or
//!   disabled state);
//! - `events.rs`: `/events` (the audit trail).

pub mod clients;
pub mod events;
pub mod users;

use std::net::IpAddr;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::domain::audit::Actor;
use crate::domain::scope;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::resource::Authenticated;

pub use clients::ClientView;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/clients",
            get(clients::list_clients).post(clients::post_client),
        )
        .route(
            "/clients/{id}",
            get(clients::get_client)
                .patch(clients::patch_client)
                .delete(clients::delete_client),
        )
        .route("/clients/{id}/secret", post(clients::post_client_secret))
        .route("/users", get(users::list_users))
        .route(
            "/users/{id}",
            get(users::get_user)
                .patch(users::patch_user)
                .delete(users::delete_user),
        )
        .route(
            "/users/{id}/sessions",
            get(users::get_user_sessions).delete(users::delete_user_sessions),
        )
        .route("/events", get(events::list_events))
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
            return Err(crate::http::extract::insufficient_scope(
                scope::ADMIN,
                auth.scheme(),
            ));
        }
        state
            .users
            .require_admin(&auth.claims.sub)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        Ok(Self(auth))
    }
}

impl Admin {
    /// The admin as the actor of a change, from the client address.
    pub fn actor(&self, ip: IpAddr) -> Actor<'_> {
        Actor::Admin {
            user_id: &self.0.claims.sub,
            ip,
        }
    }
}
