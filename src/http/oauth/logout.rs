//! `GET/POST /logout` (OpenID Connect RP-Initiated Logout 1.0): ends the
//! browser session — at once with a valid `id_token_hint`, after a
//! confirmation page (CSRF) without one — and sends the browser back to a
//! `post_logout_redirect_uri` registered for the client, never elsewhere.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use serde_json::json;

use crate::domain::grants::Params;
use crate::http::AppState;
use crate::http::browser::{
    CSRF_REFUSED, csrf_ok, csrf_token, error_page, forget_session, page, read_form, session_user,
};
use crate::http::extract::{ClientAddr, parse_form};
use crate::store::ClientRecord;

/// The request parameters the confirmation page carries along.
const CARRIED: &[&str] = &[
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "id_token_hint",
];

/// Why a logout request cannot be followed.
enum Refusal {
    /// An error page, never a redirect.
    Page(&'static str),
    Unavailable,
}

/// Where to go once signed out, decided before anything changes.
struct Destination {
    client: Option<ClientRecord>,
    redirect: Option<String>,
    state: Option<String>,
}

/// `GET /logout`.
pub async fn get_logout(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    ClientAddr(ip): ClientAddr,
    RawQuery(query): RawQuery,
) -> Response {
    match parse_form(query.unwrap_or_default().as_bytes()) {
        Ok(params) => logout(&state, jar, params, false, ip).await,
        Err(_) => error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "The logout request is malformed.",
        ),
    }
}

/// `POST /logout`: the same parameters form-encoded, or the confirmation.
pub async fn post_logout(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match read_form(&headers, &body) {
        Some(params) => logout(&state, jar, params, true, ip).await,
        None => error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "The logout request is malformed.",
        ),
    }
}

async fn logout(
    state: &AppState,
    jar: PrivateCookieJar,
    params: Params,
    posted: bool,
    ip: std::net::IpAddr,
) -> Response {
    // The hint: an ID token this server signed, expired or not (§2).
    let hint = match params.get("id_token_hint") {
        Some(raw) => match state.tokens.verify_id_token(raw) {
            Some(claims) => Some(claims),
            None => {
                return error_page(
                    state,
                    StatusCode::BAD_REQUEST,
                    "The sign-out request carries an invalid ID token.",
                );
            }
        },
        None => None,
    };
    let destination = match destination(state, &params, hint.as_ref().map(|h| h.aud.as_str())).await
    {
        Ok(destination) => destination,
        Err(Refusal::Page(message)) => return error_page(state, StatusCode::BAD_REQUEST, message),
        Err(Refusal::Unavailable) => {
            return error_page(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable. Try again shortly.",
            );
        }
    };
    // The confirmation page's form carries `action`; an RP's own POST does
    // not, and is handled like a GET.
    let answering_page = posted && params.contains_key("action");
    if answering_page && !csrf_ok(&jar, &params) {
        return error_page(state, StatusCode::FORBIDDEN, CSRF_REFUSED);
    }
    let confirmed = answering_page && params.get("action").map(String::as_str) == Some("logout");
    if answering_page && !confirmed {
        // "Stay signed in".
        return finished(state, &destination, false);
    }
    let session = match session_user(state, &jar).await {
        Ok(session) => session,
        Err(_) => {
            return error_page(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable. Try again shortly.",
            );
        }
    };
    // A hint ends the session without asking only when it names this
    // browser's signed-in user (§2: otherwise the user is asked), so a
    // link carrying someone else's ID token cannot sign a victim out.
    let hint_is_this_user = matches!(
        (&hint, &session),
        (Some(hint), Some(session)) if hint.sub == session.user.id
    );
    if !confirmed && !hint_is_this_user {
        return confirmation_page(state, jar, &params, &destination);
    }
    let ended = session
        .map(|s| (s.user.id, s.session_id))
        .or_else(|| hint.map(|h| (h.sub, h.sid)));
    if let Some((user_id, session_id)) = ended
        && let Err(e) = state.logout.end_session(&user_id, &session_id, ip).await
    {
        tracing::warn!(error = %e, "logout: token store unavailable");
        return error_page(
            state,
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable. Try again shortly.",
        );
    }
    let jar = forget_session(jar);
    (jar, finished(state, &destination, true)).into_response()
}

/// The client and the post-logout URI, checked: an unknown client, a URI
/// not registered for it, or a hint for another client is an error page,
/// never a redirect.
async fn destination(
    state: &AppState,
    params: &Params,
    hinted_client: Option<&str>,
) -> Result<Destination, Refusal> {
    let named = params.get("client_id").map(String::as_str);
    let refuse = |message: &'static str| Err(Refusal::Page(message));
    if let (Some(named), Some(hinted)) = (named, hinted_client)
        && named != hinted
    {
        return refuse("The sign-out request names two different applications.");
    }
    let client = match named.or(hinted_client) {
        Some(id) => match state.clients.get(id).await {
            Ok(Some(client)) => Some(client),
            Ok(None) => return refuse("The application is not known to this server."),
            Err(_) => return Err(Refusal::Unavailable),
        },
        None => None,
    };
    let redirect = params.get("post_logout_redirect_uri").cloned();
    if let Some(uri) = &redirect {
        let registered = client
            .as_ref()
            .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri));
        if !registered {
            return refuse("The address to return to is not registered for this application.");
        }
    }
    Ok(Destination {
        client,
        redirect,
        state: params.get("state").cloned(),
    })
}

fn confirmation_page(
    state: &AppState,
    jar: PrivateCookieJar,
    params: &Params,
    destination: &Destination,
) -> Response {
    let (jar, csrf) = csrf_token(state, jar);
    let carried: Vec<(&str, &str)> = CARRIED
        .iter()
        .filter_map(|name| params.get(*name).map(|v| (*name, v.as_str())))
        .collect();
    let context = json!({
        "client_name": destination.client.as_ref().map(|c| c.name.as_str()),
        "params": carried,
        "csrf": csrf,
    });
    (
        jar,
        page(state, StatusCode::OK, "html/logout.html", context),
    )
        .into_response()
}

/// 303 to the registered URI (with `state`), or a page saying what happened.
fn finished(state: &AppState, destination: &Destination, signed_out: bool) -> Response {
    let Some(redirect) = &destination.redirect else {
        return page(
            state,
            StatusCode::OK,
            "html/signed_out.html",
            json!({ "signed_out": signed_out }),
        );
    };
    let Ok(mut url) = url::Url::parse(redirect) else {
        return error_page(
            state,
            StatusCode::BAD_REQUEST,
            "The address to return to is invalid.",
        );
    };
    if let Some(client_state) = &destination.state {
        url.query_pairs_mut().append_pair("state", client_state);
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
