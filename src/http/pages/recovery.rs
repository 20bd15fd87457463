//! `GET/POST /account/forgot` and `GET/POST /account/reset`: a forgotten
//! password, through the same `OtpService` as the JSON API (same code, same
//! budgets). The forgot form answers with the same reset page whatever the
//! email; a reset signs every session out and goes back to the pending
//! authorization request, or to the `/account` sign-in.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use serde_json::{Value, json};

use crate::domain::FieldErrors;
use crate::http::AppState;
use crate::http::browser::{ReturnTo, csrf_token, page, see_other};
use crate::http::extract::{ClientAddr, parse_form};
use crate::http::pages::forms::{Refused, checked_form, echo, field, refusal};

/// Said after every well-formed forgot request, known address or not.
const CODE_SENT: &str = "If an account exists for this address, a 6-digit code is on its way. \
     It works for 10 minutes.";

/// `GET /account/forgot`.
pub async fn get_forgot(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    empty_form(&state, jar, query, "html/account/forgot.html")
}

/// `POST /account/forgot`: `email`. The answer is the reset page, the same
/// whether or not an account has this email.
pub async fn post_forgot(
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
    let mut view = View::new(StatusCode::OK, back);
    view.values = echo(&params, &["email"]);
    match state.otp.request(field(&params, "email"), client).await {
        Ok(()) => {
            view.notice = Some(CODE_SENT);
            recovery_page(&state, jar, "html/account/reset.html", view)
        }
        Err(e) => match refusal(&state, e, "email") {
            Refused::Fields(status, errors) => {
                view.status = status;
                view.errors = errors;
                recovery_page(&state, jar, "html/account/forgot.html", view)
            }
            Refused::Page(response) => response,
        },
    }
}

/// `GET /account/reset`: the form for a code already received.
pub async fn get_reset(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    empty_form(&state, jar, query, "html/account/reset.html")
}

/// A recovery form with nothing filled in, keeping the way back to a
/// pending authorization request the query carries.
fn empty_form(
    state: &AppState,
    jar: PrivateCookieJar,
    query: Option<String>,
    template: &str,
) -> Response {
    let params = parse_form(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let back = ReturnTo::carried(state, &params);
    recovery_page(state, jar, template, View::new(StatusCode::OK, back))
}

/// `POST /account/reset`: `email`, `otp`, `new_password`.
pub async fn post_reset(
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
    let reset = state
        .otp
        .reset(
            field(&params, "email"),
            field(&params, "otp"),
            field(&params, "new_password"),
            client,
        )
        .await;
    match reset {
        Ok(()) => {
            let next = back
                .and_then(|sealed| ReturnTo::open(&state, &sealed))
                .map_or_else(|| "/account?done=reset".to_owned(), |r| r.location());
            see_other(&next)
        }
        Err(e) => match refusal(&state, e, "otp") {
            Refused::Fields(status, errors) => {
                let mut view = View::new(status, back);
                view.values = echo(&params, &["email"]);
                view.errors = errors;
                recovery_page(&state, jar, "html/account/reset.html", view)
            }
            Refused::Page(response) => response,
        },
    }
}

/// What the forgot and reset pages show.
struct View {
    status: StatusCode,
    back: Option<String>,
    values: Value,
    errors: FieldErrors,
    notice: Option<&'static str>,
}

impl View {
    fn new(status: StatusCode, back: Option<String>) -> Self {
        Self {
            status,
            back,
            values: json!({}),
            errors: FieldErrors::new(),
            notice: None,
        }
    }
}

fn recovery_page(state: &AppState, jar: PrivateCookieJar, template: &str, view: View) -> Response {
    let (jar, csrf) = csrf_token(state, jar);
    let sign_in = view
        .back
        .as_deref()
        .and_then(|sealed| ReturnTo::open(state, sealed))
        .map_or_else(|| "/account".to_owned(), |r| r.location());
    let context = json!({
        "csrf": csrf,
        "back": view.back,
        "values": view.values,
        "errors": view.errors,
        "notice": view.notice,
        "sign_in": sign_in,
    });
    (jar, page(state, view.status, template, context)).into_response()
}
