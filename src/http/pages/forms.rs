//! What the account pages' forms share: reading fields, sorting a refusal
//! into messages next to fields (in the JSON API's wording and status) or a
//! page of its own, and the fixed notices shown after a redirect.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum_extra::extract::PrivateCookieJar;
use serde_json::{Map, Value};

use crate::domain::grants::Params;
use crate::domain::{DomainError, FieldErrors};
use crate::http::AppState;
use crate::http::browser::{CSRF_REFUSED, csrf_ok, error_page, failure_page, read_form};
use crate::http::error::ApiError;

/// Why a form was not accepted.
pub enum Refused {
    /// Messages next to their fields, with the status the JSON API answers.
    Fields(StatusCode, FieldErrors),
    /// A page of its own: throttling (429), an outage (503), ...
    Page(Response),
}

/// What a signed-in form's action came to.
pub enum Done {
    /// Saved: see the page again with this notice (`/account?done=…`).
    Notice(&'static str),
    /// Saved, and this browser's session is over (password, deletion).
    SignedOut(&'static str),
    /// Refused: the page again with messages next to the fields.
    Refused(StatusCode, FieldErrors, Value),
    /// A page of its own (throttled, unavailable).
    Page(Response),
}

/// Sorts `error` into field messages or a page. `credential_field` is the
/// field a wrong password belongs to (`password`, `old_password`).
pub fn refusal(state: &AppState, error: DomainError, credential_field: &str) -> Refused {
    let field = match &error {
        DomainError::Validation(_) => None,
        DomainError::EmailTaken => Some("email"),
        DomainError::InvalidCredentials | DomainError::WrongPassword => Some(credential_field),
        DomainError::InvalidOtp => Some("otp"),
        _ => return Refused::Page(failure_page(state, error)),
    };
    let api = ApiError::from(error);
    let status = api.status();
    let errors = match (field, api) {
        (_, ApiError::Validation(errors)) => errors,
        (Some(field), api) => FieldErrors::from([(field.to_owned(), api.detail())]),
        (None, api) => FieldErrors::from([("form".to_owned(), api.detail())]),
    };
    Refused::Fields(status, errors)
}

/// A refusal of a signed-in form, with the fields to show again.
pub fn refused(state: &AppState, error: DomainError, field: &str, values: Value) -> Done {
    match refusal(state, error, field) {
        Refused::Fields(status, errors) => Done::Refused(status, errors, values),
        Refused::Page(response) => Done::Page(response),
    }
}

/// A form body whose CSRF token matches this browser's, or the page that
/// refuses it.
pub fn checked_form(
    state: &AppState,
    jar: &PrivateCookieJar,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Params, Box<Response>> {
    let Some(params) = read_form(headers, body) else {
        return Err(Box::new(error_page(
            state,
            StatusCode::BAD_REQUEST,
            "The form is malformed.",
        )));
    };
    if !csrf_ok(jar, &params) {
        return Err(Box::new(error_page(
            state,
            StatusCode::FORBIDDEN,
            CSRF_REFUSED,
        )));
    }
    Ok(params)
}

/// A submitted field, or empty.
pub fn field<'a>(params: &'a Params, name: &str) -> &'a str {
    params.get(name).map(String::as_str).unwrap_or("")
}

/// The longest value shown again: an oversized field is refused, not
/// mirrored back.
const MAX_ECHO: usize = 256;

/// The submitted values of `names` to show again in the form: never a
/// password or a code, which the caller does not name.
pub fn echo(params: &Params, names: &[&str]) -> Value {
    let values: Map<String, Value> = names
        .iter()
        .filter_map(|name| {
            params
                .get(*name)
                .filter(|v| v.chars().count() <= MAX_ECHO)
                .map(|v| ((*name).to_owned(), Value::String(v.clone())))
        })
        .collect();
    Value::Object(values)
}

/// The notice for `/account?done=…`: a fixed text per known key, so the
/// query can never put words on the page.
pub fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "welcome" => "Your account is ready.",
        "profile" => "Your profile was saved.",
        "mobile" => "Your mobile number was saved.",
        "password" => {
            "Your password was changed and every session was signed out. Sign in with the new password."
        }
        "reset" => "Your password was changed. Sign in with the new password.",
        "signed_out" => "You are signed out.",
        "session_revoked" => "The session was signed out.",
        "everywhere" => "You are signed out everywhere: every session and app of yours.",
        "app_revoked" => "The app's access was revoked.",
        "code_sent" => "A 6-digit code is on its way to your email. It works for 10 minutes.",
        "verified" => "Your email address is verified.",
        "deleted" => "Your account was deleted.",
        "expired" => "Your session has ended. Sign in again.",
        _ => return None,
    })
}
