//! `/api/admin/events`: the audit trail, newest first, in keyset pages.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;

use super::Admin;
use crate::domain::admin::EventListing;
use crate::domain::audit::rfc3339;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::listing_params;
use crate::store::EventRecord;

/// One audit event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// Time-ordered (24 hex digits).
    pub id: String,
    /// RFC 3339, milliseconds.
    pub at: String,
    /// `login_succeeded`, `user_disabled`, ... (docs/api.md lists them).
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// The client address of the request that caused it.
    pub ip: Option<String>,
    /// A small object (`actor` for admin actions); never a secret.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<EventRecord> for EventView {
    fn from(e: EventRecord) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            kind: e.kind,
            user_id: e.user_id,
            client_id: e.client_id,
            ip: e.ip,
            detail: e.detail,
        }
    }
}

/// One page of events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/admin/events",
    tag = "admin",
    params(
        ("user_id" = Option<String>, Query, description = "Only events about this user"),
        ("client_id" = Option<String>, Query, description = "Only events about this client"),
        ("type" = Option<String>, Query, description = "Only events of this type"),
        ("since" = Option<String>, Query, description = "Only events at or after this RFC 3339 time"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of events, newest first", body = EventPage),
        (status = 422, description = "A parameter is invalid", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        crate::http::problems::AdminProblems,
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(query): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let mut params = listing_params(
        query.as_deref(),
        &["user_id", "client_id", "type", "since", "limit", "cursor"],
    )?;
    let page = state
        .admin
        .events(&EventListing {
            user_id: params.remove("user_id"),
            client_id: params.remove("client_id"),
            kind: params.remove("type"),
            since: params.remove("since"),
            limit: params.remove("limit"),
            cursor: params.remove("cursor"),
        })
        .await?;
    Ok(Json(EventPage {
        items: page.items.into_iter().map(EventView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
