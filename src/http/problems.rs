//! The shapes of the JSON errors and confirmations as the OpenAPI document
//! describes them: RFC 9457 [`Problem`], the sets of problems several
//! endpoints share (`#[utoipa::path(responses(...))]` takes them whole) and
//! [`StatusBody`]. Descriptions only: the bodies themselves are built by
//! `crate::problem` (through `error.rs`) and by the handlers.

use serde::Serialize;
use utoipa::ToSchema;

/// RFC 9457 problem details, with Tessera's stable `code`.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[schema(example = "about:blank")]
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable machine-readable error code, e.g. `validation_failed`.
    code: String,
    /// Field name → what is wrong with it (422 only).
    #[schema(value_type = Option<Object>)]
    errors: Option<serde_json::Value>,
}

/// The problems of a JSON request body, shared by every JSON endpoint.
#[derive(utoipa::IntoResponses)]
pub enum BodyProblems {
    #[response(
        status = 400,
        description = "Malformed JSON",
        content_type = "application/problem+json"
    )]
    Malformed(Problem),
    #[response(
        status = 413,
        description = "Body over 64 KiB",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "Not application/json",
        content_type = "application/problem+json"
    )]
    NotJson(Problem),
    #[response(
        status = 422,
        description = "Invalid fields",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
}

/// The problems of an endpoint behind a user access token.
#[derive(utoipa::IntoResponses)]
pub enum UserTokenProblems {
    #[response(
        status = 401,
        description = "Missing, invalid, expired or revoked token",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "Not a user token with the needed scope (profile to read, account to change; insufficient_scope)",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "The user no longer exists",
        content_type = "application/problem+json"
    )]
    Gone(Problem),
    #[response(
        status = 503,
        description = "A backend is unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// The problems of an endpoint behind an admin access token.
#[derive(utoipa::IntoResponses)]
pub enum AdminProblems {
    #[response(
        status = 401,
        description = "Missing or invalid token",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "Not an admin",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 503,
        description = "A backend is unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// A short confirmation.
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    status: String,
    detail: String,
}
