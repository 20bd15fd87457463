//! `GET/POST /account/signup`: creates an account through the same
//! `UserService::signup` as `POST /api/users/signup` (same rules, same
//! per-address budget) and signs the new user in to this browser; back to
//! the pending authorization request when the sign-in page sent them here.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use serde_json::{Value, json};

use crate::domain::FieldErrors;
use crate::domain::users::Signup;
use crate::http::AppState;
use crate::http::browser::{ReturnTo, csrf_token, failure_page, page, see_other, start_session};
use crate::http::extract::{ClientAddr, parse_form};
use crate::http::pages::forms::{Refused, checked_form, echo, field, refusal};

/// The fields shown again after a refusal (never the password).
const ECHOED: &[&str] = &["email", "fname", "lname"];

/// `GET /account/signup`.
pub async fn get_signup(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_form(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let back = ReturnTo::carried(&state, &params);
    signup_page(
        &state,
        jar,
        StatusCode::OK,
        back,
        json!({}),
        FieldErrors::new(),
    )
}

/// `POST /account/signup`: `email`, `password`, `fname`, `lname`.
pub async fn post_signup(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match checked_form(&state, &jar, &headers, &body) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let back = ReturnTo::carried(&state, &params);
    let signup = Signup {
        email: field(&params, "email").to_owned(),
        password: field(&params, "password").to_owned(),
        fname: field(&params, "fname").to_owned(),
        lname: field(&params, "lname").to_owned(),
        gender: None,
        mobile: None,
    };
    let created = match state.users.signup(signup, client).await {
        Ok(user) => user,
        Err(e) => {
            return match refusal(&state, e, "password") {
                Refused::Fields(status, errors) => {
                    signup_page(&state, jar, status, back, echo(&params, ECHOED), errors)
                }
                Refused::Page(response) => response,
            };
        }
    };
    tracing::info!(user_id = %created.id, "user signed up (page)");
    let signed_in = match state.users.sign_in_new_user(created).await {
        Ok(signed_in) => signed_in,
        Err(e) => return failure_page(&state, e),
    };
    let jar = start_session(&state, jar, &signed_in);
    let next = back
        .and_then(|sealed| ReturnTo::open(&state, &sealed))
        .map_or_else(|| "/account?done=welcome".to_owned(), |r| r.location());
    (jar, see_other(&next)).into_response()
}

fn signup_page(
    state: &AppState,
    jar: PrivateCookieJar,
    status: StatusCode,
    back: Option<String>,
    values: Value,
    errors: FieldErrors,
) -> Response {
    let (jar, csrf) = csrf_token(state, jar);
    let sign_in = back
        .as_deref()
        .and_then(|sealed| ReturnTo::open(state, sealed))
        .map_or_else(|| "/account".to_owned(), |r| r.location());
    let context = json!({
        "csrf": csrf,
        "back": back,
        "values": values,
        "errors": errors,
        "sign_in": sign_in,
    });
    (
        jar,
        page(state, status, "html/account/signup.html", context),
    )
        .into_response()
}
