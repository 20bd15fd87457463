//! `GET/POST /authorize`: the authorization code flow's HTML pages (login,
//! consent, errors), a short-lived encrypted session cookie, and CSRF
//! protection on every form.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use serde::Serialize;
use serde_json::json;

use crate::crypto::secret::random_token;
use crate::domain::DomainError;
use crate::domain::authorize::{AuthorizeError, REQUEST_PARAMS, ResponseMode, ValidRequest};
use crate::domain::grants::Params;
use crate::domain::users::SignedIn;
use crate::http::AppState;
use crate::http::browser::{
    CSRF_REFUSED, ReturnTo, csrf_ok, csrf_token, error_page, page, read_form, session_user,
    start_session,
};
use crate::http::extract::{ClientAddr, parse_form};

#[derive(Serialize)]
struct ScopeView {
    name: String,
    label: String,
}

fn describe(scope: &str) -> ScopeView {
    let label = match scope {
        "profile" => "See your name and profile",
        "email" => "See your email address",
        "phone" => "See your phone number",
        "offline_access" => "Stay signed in when you are away",
        other => other,
    };
    ScopeView {
        name: scope.to_owned(),
        label: label.to_owned(),
    }
}

/// The authorization response (RFC 6749 §4.1.2) in the request's response
/// mode: a 303 to the redirect URI with `params` in the query, or a page
/// that posts them there (`form_post`). Always with `iss` (RFC 9207) so
/// clients can tell servers apart.
fn respond_to_client(
    state: &AppState,
    redirect_uri: &str,
    mode: ResponseMode,
    params: &[(&str, &str)],
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(
            state,
            StatusCode::BAD_REQUEST,
            "The redirect URI is invalid.",
        );
    };
    let mut fields: Vec<(&str, &str)> = params.to_vec();
    fields.push(("iss", &state.config.issuer));
    if mode == ResponseMode::FormPost {
        return form_post_page(state, &url, &fields);
    }
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in &fields {
            query.append_pair(name, value);
        }
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// OAuth 2.0 Form Post Response Mode: a page whose one script (allowed by
/// its nonce, nothing else runs) submits the fields to the redirect URI; a
/// button does it without JavaScript.
fn form_post_page(state: &AppState, target: &url::Url, fields: &[(&str, &str)]) -> Response {
    let script_nonce = random_token::<16>();
    let context = json!({
        "action": target.as_str(),
        "fields": fields,
        "script_nonce": script_nonce,
    });
    let mut response = page(state, StatusCode::OK, "html/form_post.html", context);
    // No `form-action`: browsers apply it to the redirects that follow the
    // submission too, which would strand clients whose callback redirects
    // elsewhere; the action is ours and escaped, and only this script runs.
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{script_nonce}'; style-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

fn answer_error(state: &AppState, error: AuthorizeError) -> Response {
    match error {
        AuthorizeError::Page(message) => error_page(state, StatusCode::BAD_REQUEST, message),
        AuthorizeError::Redirect {
            redirect_uri,
            state: client_state,
            response_mode,
            error,
            description,
        } => {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(s) = client_state.as_deref() {
                params.push(("state", s));
            }
            respond_to_client(state, &redirect_uri, response_mode, &params)
        }
        AuthorizeError::Store(e) => {
            tracing::warn!(error = %e, "authorization page: store unavailable");
            error_page(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable. Try again shortly.",
            )
        }
    }
}

/// What the forms carry to come back to the request: a pushed request's
/// `client_id` and `request_uri` (its parameters stay in the store), or
/// the request's own parameters.
fn carried(request: &ValidRequest, params: &Params) -> Vec<(String, String)> {
    if let Some(uri) = &request.pushed {
        return vec![
            ("client_id".to_owned(), request.client.id.clone()),
            ("request_uri".to_owned(), uri.expose().to_owned()),
        ];
    }
    REQUEST_PARAMS
        .iter()
        .filter_map(|name| params.get(*name).map(|v| ((*name).to_owned(), v.clone())))
        .collect()
}

fn scopes_of(request: &ValidRequest) -> Vec<ScopeView> {
    request
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(describe)
        .collect()
}

fn login_page(
    state: &AppState,
    jar: PrivateCookieJar,
    request: &ValidRequest,
    params: &Params,
    status: StatusCode,
    error: Option<&str>,
    email: &str,
) -> Response {
    let (jar, csrf) = csrf_token(state, jar);
    let carried = carried(request, params);
    // Sign-up and forgot-password come back to this request when done.
    let sealed = ReturnTo::seal(state, &carried);
    let context = json!({
        "client_name": request.client.name,
        "scopes": scopes_of(request),
        "params": carried,
        "csrf": csrf,
        "error": error,
        "email": email,
        "back": sealed,
    });
    (jar, page(state, status, "html/login.html", context)).into_response()
}

/// After the request is valid and the user (maybe) known: ask for what is
/// missing, or issue the code.
async fn proceed(
    state: &AppState,
    jar: PrivateCookieJar,
    request: ValidRequest,
    params: &Params,
    user: Option<SignedIn>,
) -> Response {
    let Some(user) = user else {
        if request.prompt.none {
            return answer_error(
                state,
                request.redirect_error("login_required", "the user is not signed in"),
            );
        }
        let hint = request.login_hint.clone().unwrap_or_default();
        return login_page(state, jar, &request, params, StatusCode::OK, None, &hint);
    };
    match state.authorizer.consented(&request, &user.user.id).await {
        Ok(true) => issue_code(state, jar, &request, &user).await,
        Ok(false) if request.prompt.none => answer_error(
            state,
            request.redirect_error("consent_required", "the user has not approved this client"),
        ),
        Ok(false) => {
            let (jar, csrf) = csrf_token(state, jar);
            let context = json!({
                "client_name": request.client.name,
                "scopes": scopes_of(&request),
                "params": carried(&request, params),
                "csrf": csrf,
                "email": user.user.email,
            });
            (
                jar,
                page(state, StatusCode::OK, "html/consent.html", context),
            )
                .into_response()
        }
        Err(e) => answer_error(state, AuthorizeError::Store(e)),
    }
}

async fn issue_code(
    state: &AppState,
    jar: PrivateCookieJar,
    request: &ValidRequest,
    user: &SignedIn,
) -> Response {
    match state.authorizer.approve(request, user).await {
        Ok(code) => {
            tracing::info!(client_id = %request.client.id, user_id = %user.user.id, "authorization code issued");
            let mut params = vec![("code", code.as_str())];
            if let Some(s) = request.state.as_deref() {
                params.push(("state", s));
            }
            (
                jar,
                respond_to_client(state, &request.redirect_uri, request.response_mode, &params),
            )
                .into_response()
        }
        Err(e) => answer_error(state, e),
    }
}

/// `GET /authorize`.
pub async fn get_authorize(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(params) = parse_form(query.unwrap_or_default().as_bytes()) else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "The authorization request is malformed.",
        );
    };
    let request = match state.authorizer.open(&params).await {
        Ok(request) => request,
        Err(e) => return answer_error(&state, e),
    };
    // A session that cannot answer this request (prompt=login, older than
    // max_age, another user than id_token_hint names) means signing in again.
    let user = match session_user(&state, &jar).await {
        Ok(user) => user.filter(|session| state.authorizer.session_suits(&request, session)),
        Err(e) => return answer_error(&state, AuthorizeError::Store(e)),
    };
    proceed(&state, jar, request, &params, user).await
}

/// `POST /authorize`: the login and consent forms.
pub async fn post_authorize(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(params) = read_form(&headers, &body) else {
        return error_page(&state, StatusCode::BAD_REQUEST, "The form is malformed.");
    };
    if !csrf_ok(&jar, &params) {
        return error_page(&state, StatusCode::FORBIDDEN, CSRF_REFUSED);
    }
    let request = match state.authorizer.validate(&params).await {
        Ok(request) => request,
        Err(e) => return answer_error(&state, e),
    };
    match params.get("action").map(String::as_str) {
        Some("login") => {
            let email = params.get("email").map(String::as_str).unwrap_or("");
            let password = params.get("password").map(String::as_str).unwrap_or("");
            let from = crate::domain::users::SignInFrom {
                ip: client,
                client_id: &request.client.id,
            };
            match state.users.authenticate(email, password, from).await {
                Ok(user) => {
                    let jar = start_session(&state, jar, &user);
                    proceed(&state, jar, request, &params, Some(user)).await
                }
                Err(DomainError::InvalidCredentials) => {
                    let message = "Email or password is incorrect.";
                    login_page(
                        &state,
                        jar,
                        &request,
                        &params,
                        StatusCode::OK,
                        Some(message),
                        email,
                    )
                }
                Err(DomainError::Throttled(retry)) => {
                    let message = format!(
                        "Too many attempts. Try again in {} minutes.",
                        retry.as_secs().div_ceil(60)
                    );
                    let mut response = login_page(
                        &state,
                        jar,
                        &request,
                        &params,
                        StatusCode::TOO_MANY_REQUESTS,
                        Some(&message),
                        email,
                    );
                    if let Ok(value) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, value);
                    }
                    response
                }
                Err(DomainError::AccountDisabled) => {
                    let message = "This account has been disabled. Contact the administrator.";
                    login_page(
                        &state,
                        jar,
                        &request,
                        &params,
                        StatusCode::FORBIDDEN,
                        Some(message),
                        email,
                    )
                }
                Err(DomainError::Store(e)) => answer_error(&state, AuthorizeError::Store(e)),
                Err(DomainError::Hasher(crate::crypto::password::HasherError::Busy)) => {
                    let mut response = error_page(
                        &state,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The service is busy. Try again in a moment.",
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    response
                }
                Err(e) => {
                    tracing::error!(error = %e, "login on the authorization page failed");
                    error_page(
                        &state,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong. Try again.",
                    )
                }
            }
        }
        Some("consent") => {
            // The consent form cannot answer for another user than the
            // `id_token_hint` names. (prompt=login and max_age were met by
            // the sign-in that led here; the ID token's `auth_time` says when.)
            let user = match session_user(&state, &jar).await {
                Ok(Some(user)) if state.authorizer.is_hinted_user(&request, &user) => user,
                Ok(_) => {
                    return login_page(&state, jar, &request, &params, StatusCode::OK, None, "");
                }
                Err(e) => return answer_error(&state, AuthorizeError::Store(e)),
            };
            match params.get("decision").map(String::as_str) {
                Some("approve") => {
                    if let Err(e) = state
                        .authorizer
                        .remember_consent(&request, &user.user.id, client)
                        .await
                    {
                        return answer_error(&state, AuthorizeError::Store(e));
                    }
                    issue_code(&state, jar, &request, &user).await
                }
                _ => answer_error(
                    &state,
                    request.redirect_error("access_denied", "the user denied the request"),
                ),
            }
        }
        _ => error_page(&state, StatusCode::BAD_REQUEST, "The form is malformed."),
    }
}

/// `GET /authorize/style.css`.
pub async fn get_stylesheet() -> Response {
    let mut response = crate::templates::STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
