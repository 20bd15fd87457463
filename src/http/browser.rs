//! What every HTML page of Tessera shares (`/authorize`, `/logout`,
//! `/account/*`): the page headers (strict CSP, no framing, no caching),
//! the encrypted browser-session and CSRF cookies, reading a form, the pages
//! for throttling and outages, and the tamper-proof way back to a pending
//! authorization request (`return`).

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::crypto::secret::{constant_time_eq, hmac_sha256, random_token};
use crate::domain::DomainError;
use crate::domain::grants::Params;
use crate::domain::users::SignedIn;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::parse_form;
use crate::store::StoreError;

pub const SESSION_COOKIE: &str = "tessera_session";
pub const CSRF_COOKIE: &str = "tessera_csrf";
/// A browser session lasts an hour: enough for a second `/authorize` to skip
/// the password, short enough that a shared computer forgets.
pub const SESSION_TTL: i64 = 3600;

/// The pages may be shown by no other site (clickjacking) and load nothing
/// but our stylesheet. (No `form-action`: browsers apply it to the redirect
/// that follows a sign-in, which goes to the client.)
const PAGE_CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages' message for a form whose CSRF token does not match.
pub const CSRF_REFUSED: &str = "This form has expired. Go back, reload the page and try again.";

/// An HTML page with the headers every page carries.
pub fn page(
    state: &AppState,
    status: StatusCode,
    template: &str,
    context: serde_json::Value,
) -> Response {
    let html = match state.templates.render(template, context) {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "page failed to render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page that says why the request cannot go on.
pub fn error_page(state: &AppState, status: StatusCode, message: &str) -> Response {
    page(
        state,
        status,
        "html/error.html",
        json!({ "message": message }),
    )
}

/// The page for an error no form field can show: throttling (429 with the
/// wait), an outage or a busy hasher (503), anything else with the status
/// and wording the JSON API gives it.
pub fn failure_page(state: &AppState, error: DomainError) -> Response {
    let error = ApiError::from(error);
    let (status, detail) = (error.status(), error.detail());
    let (message, retry_after) = match &error {
        ApiError::Throttled(retry) => {
            let wait = retry.as_secs().div_ceil(60).max(1);
            let unit = if wait == 1 { "minute" } else { "minutes" };
            (
                format!("{detail}. Try again in {wait} {unit}."),
                Some(retry.as_secs().max(1)),
            )
        }
        ApiError::Overloaded => (format!("{detail}."), Some(1)),
        ApiError::Internal(cause) => {
            tracing::error!(cause = %cause, "page failed");
            (format!("{detail}."), None)
        }
        _ => (format!("{detail}."), None),
    };
    let mut response = page(
        state,
        status,
        "html/error.html",
        json!({ "message": message, "account": true }),
    );
    if let Some(value) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A 303 to a path of ours (never a URL from the request).
pub fn see_other(path: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(path) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A cookie of the pages: encrypted by the jar, HTTP-only, same-site.
pub fn cookie<'a>(state: &AppState, name: &'a str, value: String) -> Cookie<'a> {
    let mut cookie = Cookie::new(name, value);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_secure(state.config.issuer.starts_with("https://"));
    // `/` so that `/logout` and `/account` see the browser session too.
    cookie.set_path("/");
    cookie.set_max_age(time::Duration::seconds(SESSION_TTL));
    cookie
}

/// The CSRF token of this browser, creating it if needed.
pub fn csrf_token(state: &AppState, jar: PrivateCookieJar) -> (PrivateCookieJar, String) {
    match jar.get(CSRF_COOKIE) {
        Some(existing) => {
            let value = existing.value().to_owned();
            (jar, value)
        }
        None => {
            let token = random_token::<32>();
            (jar.add(cookie(state, CSRF_COOKIE, token.clone())), token)
        }
    }
}

/// Whether the form carries the token of this browser's own CSRF cookie.
pub fn csrf_ok(jar: &PrivateCookieJar, params: &Params) -> bool {
    match (jar.get(CSRF_COOKIE), params.get("csrf")) {
        (Some(cookie), Some(field)) => {
            constant_time_eq(cookie.value().as_bytes(), field.as_bytes())
        }
        _ => false,
    }
}

/// A form-encoded body's fields; `None` for another content type or a
/// malformed body (repeated fields, bad UTF-8).
pub fn read_form(headers: &HeaderMap, body: &Bytes) -> Option<Params> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    is_form.then(|| parse_form(body).ok()).flatten()
}

/// The signed-in user of this browser, if the session is live: not
/// expired, and begun in the user's current credential epoch.
pub async fn session_user(
    state: &AppState,
    jar: &PrivateCookieJar,
) -> Result<Option<SignedIn>, StoreError> {
    let Some(session) = jar.get(SESSION_COOKIE) else {
        return Ok(None);
    };
    let parts: Vec<&str> = session.value().split('.').collect();
    let [user_id, expires, epoch, session_id, auth_time] = parts[..] else {
        return Ok(None);
    };
    let (Ok(expires), Ok(epoch), Ok(auth_time)) = (
        expires.parse::<i64>(),
        epoch.parse::<u64>(),
        auth_time.parse::<i64>(),
    ) else {
        return Ok(None);
    };
    if expires <= state.clock.now() {
        return Ok(None);
    }
    match state
        .users
        .session_user(user_id, epoch, session_id, auth_time)
        .await
    {
        Ok(user) => Ok(user),
        Err(DomainError::Store(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

/// Starts the browser session of `signed_in`: the cookie says who, until
/// when, in which credential epoch and sign-in session (it is encrypted and
/// authenticated, so none of it can be forged or changed).
pub fn start_session(
    state: &AppState,
    jar: PrivateCookieJar,
    signed_in: &SignedIn,
) -> PrivateCookieJar {
    let expires = state.clock.now() + SESSION_TTL;
    let value = format!(
        "{}.{expires}.{}.{}.{}",
        signed_in.user.id, signed_in.epoch, signed_in.session_id, signed_in.auth_time
    );
    jar.add(cookie(state, SESSION_COOKIE, value))
}

/// Forgets the browser session (the caller ends it in the token store).
pub fn forget_session(jar: PrivateCookieJar) -> PrivateCookieJar {
    jar.remove(Cookie::build(SESSION_COOKIE).path("/"))
}

/// The longest `return` value accepted: an authorization request's query
/// is far shorter; anything longer is not ours.
const MAX_RETURN: usize = 4096;
/// How long a `return` value stays good (the sign-up or reset detour).
const RETURN_TTL: i64 = 3600;
/// Domain separation: the cookie key's MAC over a `return` value can never
/// be mistaken for a MAC of anything else.
const RETURN_CONTEXT: &[u8] = b"tessera/account-return/v1\0";

/// A pending `/authorize` request carried through sign-up or password reset
/// as `return`: the request's query and an expiry, MACed with the cookie
/// key. It only ever leads to our own `/authorize` (which validates the
/// request again), so a forged one cannot redirect anywhere; an altered,
/// expired or oversized one is ignored.
pub struct ReturnTo {
    query: String,
}

impl ReturnTo {
    /// Seals the request's own parameters.
    pub fn seal(state: &AppState, params: &[(String, String)]) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let payload = format!("{}.{query}", state.clock.now() + RETURN_TTL);
        let mac = Self::mac(state, payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The request sealed in `sealed`, if the MAC holds and it has not expired.
    pub fn open(state: &AppState, sealed: &str) -> Option<Self> {
        if sealed.len() > MAX_RETURN {
            return None;
        }
        let (payload, mac) = sealed.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if !constant_time_eq(&Self::mac(state, &payload), &mac) {
            return None;
        }
        let payload = String::from_utf8(payload).ok()?;
        let (expires, query) = payload.split_once('.')?;
        if expires.parse::<i64>().ok()? <= state.clock.now() {
            return None;
        }
        Some(Self {
            query: query.to_owned(),
        })
    }

    /// The valid `return` field of a form or query, kept sealed to carry on.
    pub fn carried(state: &AppState, params: &Params) -> Option<String> {
        params
            .get("return")
            .filter(|sealed| Self::open(state, sealed).is_some())
            .cloned()
    }

    /// Where to send the browser: our own `/authorize` with the request.
    pub fn location(&self) -> String {
        format!("/authorize?{}", self.query)
    }

    fn mac(state: &AppState, payload: &[u8]) -> [u8; 32] {
        let mut message = RETURN_CONTEXT.to_vec();
        message.extend_from_slice(payload);
        hmac_sha256(state.cookie_key.signing(), &message)
    }
}
