//! `GET/POST /account`: the signed-in user's own account in the browser
//! (profile, mobile, password, sign-out here; sessions, apps, email
//! verification and deletion in `apps.rs`).
//! Without a browser session it is a sign-in form (the same
//! `UserService::authenticate` and login budgets as `/authorize`, starting
//! the same browser session); with one, every section is a form whose
//! `action` names what to do, each calling the function the JSON API calls.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use serde_json::{Value, json};

use crate::domain::grants::Params;
use crate::domain::tokens::FIRST_PARTY_CLIENT_ID;
use crate::domain::users::{ProfileUpdate, SignInFrom, SignedIn};
use crate::domain::{DomainError, FieldErrors};
use crate::http::AppState;
use crate::http::browser::{
    csrf_token, error_page, failure_page, forget_session, page, see_other, session_user,
    start_session,
};
use crate::http::extract::{ClientAddr, parse_form};
use crate::http::pages::apps;
use crate::http::pages::forms::{
    Done, Refused, checked_form, echo, field, notice, refusal, refused,
};

/// `GET /account`: the account page, or the sign-in form.
pub async fn get_account(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_form(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let notice = notice(params.get("done").map(String::as_str));
    match session_user(&state, &jar).await {
        Ok(Some(user)) => {
            let view = AccountView {
                status: StatusCode::OK,
                notice,
                values: json!({}),
                errors: FieldErrors::new(),
            };
            account_page(&state, jar, &user, view).await
        }
        Ok(None) => signin_page(&state, jar, StatusCode::OK, notice, json!({}), None),
        Err(e) => failure_page(&state, DomainError::Store(e)),
    }
}

/// `POST /account`: one of the page's forms, named by `action`.
pub async fn post_account(
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
    let action = field(&params, "action");
    if action == "login" {
        return sign_in(&state, jar, &params, client).await;
    }
    let user = match session_user(&state, &jar).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let notice = notice(Some("expired"));
            return signin_page(
                &state,
                jar,
                StatusCode::UNAUTHORIZED,
                notice,
                json!({}),
                None,
            );
        }
        Err(e) => return failure_page(&state, DomainError::Store(e)),
    };
    let done = match action {
        "profile" => update_profile(&state, &user, &params).await,
        "mobile" => update_mobile(&state, &user, &params).await,
        "password" => change_password(&state, &user, &params, client).await,
        "signout" => sign_out(&state, &user, client).await,
        other => match apps::act(&state, &user, other, &params, client).await {
            Some(done) => done,
            None => return error_page(&state, StatusCode::BAD_REQUEST, "The form is malformed."),
        },
    };
    match done {
        Done::Notice(key) => see_other(&format!("/account?done={key}")),
        Done::SignedOut(key) => (
            forget_session(jar),
            see_other(&format!("/account?done={key}")),
        )
            .into_response(),
        Done::Refused(status, errors, values) => {
            let view = AccountView {
                status,
                notice: None,
                values,
                errors,
            };
            account_page(&state, jar, &user, view).await
        }
        Done::Page(response) => response,
    }
}

/// The sign-in form's `login`: the same budgets and the same browser
/// session as the sign-in of `/authorize`.
async fn sign_in(
    state: &AppState,
    jar: PrivateCookieJar,
    params: &Params,
    client: std::net::IpAddr,
) -> Response {
    let (email, password) = (field(params, "email"), field(params, "password"));
    // The account console signs in as the built-in first-party client.
    let from = SignInFrom {
        ip: client,
        client_id: FIRST_PARTY_CLIENT_ID,
    };
    match state.users.authenticate(email, password, from).await {
        Ok(signed_in) => {
            let jar = start_session(state, jar, &signed_in);
            (jar, see_other("/account")).into_response()
        }
        Err(e) => match refusal(state, e, "password") {
            Refused::Fields(status, errors) => signin_page(
                state,
                jar,
                status,
                None,
                echo(params, &["email"]),
                Some(errors),
            ),
            Refused::Page(response) => response,
        },
    }
}

async fn update_profile(state: &AppState, user: &SignedIn, params: &Params) -> Done {
    let update = ProfileUpdate {
        fname: params.get("fname").cloned(),
        lname: params.get("lname").cloned(),
        gender: params.get("gender").cloned(),
    };
    match state.users.update_profile(&user.user.id, update).await {
        Ok(_) => Done::Notice("profile"),
        Err(e) => refused(
            state,
            e,
            "fname",
            echo(params, &["fname", "lname", "gender"]),
        ),
    }
}

async fn update_mobile(state: &AppState, user: &SignedIn, params: &Params) -> Done {
    match state
        .users
        .update_mobile(&user.user.id, field(params, "mobile"))
        .await
    {
        Ok(_) => Done::Notice("mobile"),
        Err(e) => refused(state, e, "mobile", echo(params, &["mobile"])),
    }
}

/// Every session ends with the change, this browser's included.
async fn change_password(
    state: &AppState,
    user: &SignedIn,
    params: &Params,
    client: std::net::IpAddr,
) -> Done {
    let (old, new) = (field(params, "old_password"), field(params, "new_password"));
    match state
        .users
        .change_password(&user.user.id, old, new, client)
        .await
    {
        Ok(()) => {
            tracing::info!(user_id = %user.user.id, "password changed (page); sessions revoked");
            Done::SignedOut("password")
        }
        Err(e) => refused(state, e, "old_password", json!({})),
    }
}

/// Ends this browser's sign-in session as `/logout` does: its families
/// without `offline_access` revoked, back-channel notices sent.
async fn sign_out(state: &AppState, user: &SignedIn, client: std::net::IpAddr) -> Done {
    match state
        .logout
        .end_session(&user.user.id, &user.session_id, client)
        .await
    {
        Ok(()) => Done::SignedOut("signed_out"),
        Err(e) => Done::Page(failure_page(state, DomainError::Store(e))),
    }
}

/// What the account page shows besides the user.
pub(super) struct AccountView {
    pub status: StatusCode,
    pub notice: Option<&'static str>,
    /// Submitted values shown again instead of the stored ones.
    pub values: Value,
    pub errors: FieldErrors,
}

async fn account_page(
    state: &AppState,
    jar: PrivateCookieJar,
    user: &SignedIn,
    view: AccountView,
) -> Response {
    let (sessions, apps) = match apps::lists(state, user).await {
        Ok(lists) => lists,
        Err(e) => return failure_page(state, e),
    };
    let (jar, csrf) = csrf_token(state, jar);
    let u = &user.user;
    let mut values = json!({
        "fname": u.fname, "lname": u.lname, "gender": u.gender, "mobile": u.mobile,
    });
    if let (Some(values), Value::Object(submitted)) = (values.as_object_mut(), view.values) {
        values.extend(submitted);
    }
    let context = json!({
        "csrf": csrf,
        "email": u.email,
        "email_verified": u.email_verified,
        "values": values,
        "errors": view.errors,
        "notice": view.notice,
        "sessions": sessions,
        "apps": apps,
    });
    (
        jar,
        page(state, view.status, "html/account/account.html", context),
    )
        .into_response()
}

fn signin_page(
    state: &AppState,
    jar: PrivateCookieJar,
    status: StatusCode,
    notice: Option<&'static str>,
    values: Value,
    errors: Option<FieldErrors>,
) -> Response {
    let (jar, csrf) = csrf_token(state, jar);
    let context = json!({
        "csrf": csrf,
        "notice": notice,
        "values": values,
        "errors": errors.unwrap_or_default(),
    });
    (
        jar,
        page(state, status, "html/account/signin.html", context),
    )
        .into_response()
}
