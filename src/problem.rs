//! RFC 9457 problem+json bodies with Tessera's stable `code` member: the
//! one shape of every JSON error outside the OAuth endpoints. A leaf: it
//! depends on nothing else in the crate. (The `tessera-resource` crate
//! builds the same shape for its 401/403 answers.)

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An RFC 9457 problem+json response with our stable `code` member and,
/// for validation failures, `errors` (field name → what is wrong with it).
pub fn problem(
    status: StatusCode,
    code: &str,
    detail: &str,
    errors: Option<&BTreeMap<String, String>>,
) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    if let Some(errors) = errors {
        body["errors"] = json!(errors);
    }
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
