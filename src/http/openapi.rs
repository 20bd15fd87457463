//! The OpenAPI 3.1 document at `GET /openapi.json`, generated with utoipa
//! from the handlers' annotations (user and admin APIs) and from the
//! descriptions below (OAuth and operations endpoints, whose handlers take
//! raw forms and headers). A leaf of `http`: only the router refers to it;
//! the problem shapes the handlers' annotations name are in `problems.rs`.

#![allow(dead_code)] // the functions below exist to carry `#[utoipa::path]`

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// RFC 6749 §5.2 error.
#[derive(Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `temporarily_unavailable`.
    error: String,
    error_description: String,
}

/// `POST /token` form (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    /// With `client_secret_post` or `none`.
    client_id: Option<String>,
    /// With `client_secret_post`.
    client_secret: Option<String>,
}

/// `POST /revoke` and `POST /introspect` form.
#[derive(Deserialize, ToSchema)]
pub struct TokenOnlyForm {
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// RFC 7662 §2.2 (only `active` for tokens that are not live).
#[derive(Serialize, ToSchema)]
pub struct Introspection {
    active: bool,
    scope: Option<String>,
    client_id: Option<String>,
    sub: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    iss: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    token_type: Option<String>,
}

#[utoipa::path(post, path = "/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "Token response (Cache-Control: no-store)", body = crate::http::oauth::TokenResponse),
        (status = 400, description = "RFC 6749 §5.2 error", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 413, description = "Body over 64 KiB", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    ))]
fn token() {}

/// `POST /par` form (RFC 9126 §2.1): the authorization request's
/// parameters, as `/authorize` takes them, and the client's credentials.
#[derive(Deserialize, ToSchema)]
pub struct ParForm {
    /// `code`.
    response_type: String,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    /// `S256`.
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    nonce: Option<String>,
    max_age: Option<String>,
    login_hint: Option<String>,
    id_token_hint: Option<String>,
    response_mode: Option<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key to bind the code to
    /// (with a `DPoP` header, that proof's key).
    dpop_jkt: Option<String>,
    /// With `client_secret_post` or `none`; if Basic is used too, the same id.
    client_id: Option<String>,
    /// With `client_secret_post`.
    client_secret: Option<String>,
}

#[utoipa::path(post, path = "/par", tag = "oauth",
    request_body(content = ParForm, content_type = "application/x-www-form-urlencoded"),
    params(("DPoP" = Option<String>, Header, description = "A DPoP proof (RFC 9449 §10.1): its key becomes the request's dpop_jkt")),
    security((), ("basic" = [])),
    responses(
        (status = 201, description = "The request_uri for /authorize, single use (Cache-Control: no-store)", body = crate::http::oauth::par::PushedResponse),
        (status = 400, description = "RFC 6749 §5.2 error: what /authorize would refuse (invalid_request, invalid_scope, unauthorized_client, ...), request_not_supported, invalid_dpop_proof", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 413, description = "Body over 64 KiB", body = OAuthErrorBody),
        (status = 429, description = "Too many failed client authentications (Retry-After)", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    ))]
fn par() {}

#[utoipa::path(post, path = "/revoke", tag = "oauth",
    request_body(content = TokenOnlyForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (RFC 7009 §2.2)"),
        (status = 400, description = "invalid_request / unauthorized_client", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 413, description = "Body over 64 KiB", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    ))]
fn revoke() {}

#[utoipa::path(post, path = "/introspect", tag = "oauth",
    request_body(content = TokenOnlyForm, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "RFC 7662 answer", body = Introspection),
        (status = 400, description = "invalid_request", body = OAuthErrorBody),
        (status = 401, description = "invalid_client (public clients cannot introspect)", body = OAuthErrorBody),
        (status = 413, description = "Body over 64 KiB", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    ))]
fn introspect() {}

#[utoipa::path(get, path = "/authorize", tag = "oauth",
    params(
        ("response_type" = Option<String>, Query, description = "code"),
        ("client_id" = Option<String>, Query),
        ("redirect_uri" = Option<String>, Query),
        ("scope" = Option<String>, Query),
        ("state" = Option<String>, Query),
        ("code_challenge" = Option<String>, Query),
        ("code_challenge_method" = Option<String>, Query, description = "S256"),
        ("prompt" = Option<String>, Query, description = "space-separated: none, login, consent, select_account (none alone)"),
        ("nonce" = Option<String>, Query, description = "OpenID Connect: echoed in the ID token"),
        ("max_age" = Option<u32>, Query, description = "seconds since sign-in after which the user signs in again"),
        ("login_hint" = Option<String>, Query, description = "email to prefill"),
        ("id_token_hint" = Option<String>, Query, description = "an ID token of the expected user"),
        ("response_mode" = Option<String>, Query, description = "query or form_post"),
        ("request_uri" = Option<String>, Query, description = "a request_uri from /par (RFC 9126), with client_id; the pushed request's parameters replace every other"),
        ("dpop_jkt" = Option<String>, Query, description = "RFC 9449 §10: the thumbprint of the DPoP key the code is bound to"),
    ),
    responses(
        (status = 200, description = "Login or consent page", content_type = "text/html"),
        (status = 303, description = "Back to the client with a code or an error"),
        (status = 400, description = "Error page (untrusted client or redirect URI)", content_type = "text/html"),
        (status = 503, description = "Error page (backend unavailable)", content_type = "text/html"),
    ))]
fn authorize() {}

/// The claims `/userinfo` answers (those of the token's scopes; `sub` always).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UserInfo {
    sub: String,
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    gender: Option<String>,
    updated_at: Option<i64>,
    email: Option<String>,
    email_verified: Option<bool>,
    phone_number: Option<String>,
    phone_number_verified: Option<bool>,
}

#[utoipa::path(get, path = "/userinfo", tag = "openid",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The claims of the token's scopes", body = UserInfo),
        (status = 401, description = "invalid_token (WWW-Authenticate)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 403, description = "insufficient_scope: the token lacks openid", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The user no longer exists", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    ))]
fn userinfo() {}

/// The token may also come form-encoded in an `access_token` field (RFC
/// 6750 §2.2) instead of the header; the body is optional, so it is not
/// described as a schema here.
#[utoipa::path(post, path = "/userinfo", tag = "openid",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The claims of the token's scopes", body = UserInfo),
        (status = 401, description = "invalid_token (WWW-Authenticate)", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 403, description = "insufficient_scope: the token lacks openid", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The user no longer exists", body = crate::http::problems::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    ))]
fn userinfo_form() {}

#[utoipa::path(get, path = "/logout", tag = "openid",
    params(
        ("id_token_hint" = Option<String>, Query),
        ("client_id" = Option<String>, Query),
        ("post_logout_redirect_uri" = Option<String>, Query),
        ("state" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "Confirmation page (no valid hint) or signed-out page", content_type = "text/html"),
        (status = 303, description = "Signed out: back to the registered post-logout URI with state"),
        (status = 400, description = "Error page (invalid hint, unknown client, unregistered URI)", content_type = "text/html"),
        (status = 503, description = "Error page (backend unavailable)", content_type = "text/html"),
    ))]
fn logout() {}

#[utoipa::path(post, path = "/logout", tag = "openid",
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Confirmation page or signed-out page", content_type = "text/html"),
        (status = 303, description = "Signed out: back to the registered post-logout URI with state"),
        (status = 400, description = "Error page", content_type = "text/html"),
        (status = 403, description = "Error page: the confirmation's CSRF token is missing or wrong", content_type = "text/html"),
        (status = 503, description = "Error page (backend unavailable)", content_type = "text/html"),
    ))]
fn logout_form() {}

/// `POST /logout`: the request's parameters, or the confirmation page's form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct LogoutForm {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    csrf: Option<String>,
    /// `logout` to confirm.
    action: Option<String>,
}

#[utoipa::path(post, path = "/authorize", tag = "oauth",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "The authorization request's parameters plus csrf, action (login|consent) and email/password or decision"),
    responses(
        (status = 200, description = "Login or consent page", content_type = "text/html"),
        (status = 303, description = "Back to the client with a code or an error"),
        (status = 400, description = "Error page", content_type = "text/html"),
        (status = 403, description = "CSRF check failed", content_type = "text/html"),
        (status = 429, description = "Login throttled", content_type = "text/html"),
        (status = 503, description = "Error page (backend unavailable)", content_type = "text/html"),
    ))]
fn authorize_form() {}

#[utoipa::path(get, path = "/account", tag = "account pages",
    params(("done" = Option<String>, Query, description = "A notice to show after a redirect (fixed texts for known keys; anything else shows nothing)")),
    responses(
        (status = 200, description = "The account page (signed in) or its sign-in form", content_type = "text/html"),
        (status = 503, description = "Error page (backend unavailable)", content_type = "text/html"),
    ))]
fn account() {}

#[utoipa::path(post, path = "/account", tag = "account pages",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "csrf, action (login|profile|mobile|password|signout|send_code|verify_email|revoke_session|sign_out_everywhere|revoke_app|delete) and the action's fields"),
    responses(
        (status = 200, description = "The page again (a refused form shows its messages next to the fields with the status the JSON API answers: 400, 401, 403, 409, 422)", content_type = "text/html"),
        (status = 303, description = "Done: back to /account with a notice"),
        (status = 400, description = "Malformed form, or a refused field", content_type = "text/html"),
        (status = 401, description = "No browser session (the sign-in form), or wrong email or password", content_type = "text/html"),
        (status = 403, description = "CSRF check failed, or the current password is wrong", content_type = "text/html"),
        (status = 404, description = "revoke_session / revoke_app: no such session or app of the user's", content_type = "text/html"),
        (status = 422, description = "A field is invalid (the form again, the message next to the field)", content_type = "text/html"),
        (status = 429, description = "Throttled: a page with the wait (Retry-After)", content_type = "text/html"),
        (status = 503, description = "Backend unavailable or hasher busy", content_type = "text/html"),
    ))]
fn account_form() {}

#[utoipa::path(get, path = "/account/signup", tag = "account pages",
    params(("return" = Option<String>, Query, description = "The sealed pending authorization request (from the sign-in page); ignored unless valid")),
    responses((status = 200, description = "The sign-up form", content_type = "text/html")))]
fn account_signup() {}

#[utoipa::path(post, path = "/account/signup", tag = "account pages",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "csrf, email, password, fname, lname, optional return"),
    responses(
        (status = 303, description = "Created and signed in: to /account, or back to the pending authorization request"),
        (status = 400, description = "Malformed form", content_type = "text/html"),
        (status = 403, description = "CSRF check failed", content_type = "text/html"),
        (status = 409, description = "The email is registered (the form again, as the JSON API's 409)", content_type = "text/html"),
        (status = 422, description = "A field is invalid (the form again)", content_type = "text/html"),
        (status = 429, description = "Too many sign-ups from this address", content_type = "text/html"),
        (status = 503, description = "Backend unavailable or hasher busy", content_type = "text/html"),
    ))]
fn account_signup_form() {}

#[utoipa::path(get, path = "/account/forgot", tag = "account pages",
    params(("return" = Option<String>, Query, description = "The sealed pending authorization request")),
    responses((status = 200, description = "The forgot-password form", content_type = "text/html")))]
fn account_forgot() {}

#[utoipa::path(post, path = "/account/forgot", tag = "account pages",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "csrf, email, optional return"),
    responses(
        (status = 200, description = "The reset form, the same whether or not the email has an account", content_type = "text/html"),
        (status = 400, description = "Malformed form", content_type = "text/html"),
        (status = 403, description = "CSRF check failed", content_type = "text/html"),
        (status = 422, description = "Not an email address", content_type = "text/html"),
        (status = 429, description = "Too many codes asked for", content_type = "text/html"),
        (status = 503, description = "Backend unavailable", content_type = "text/html"),
    ))]
fn account_forgot_form() {}

#[utoipa::path(get, path = "/account/reset", tag = "account pages",
    params(("return" = Option<String>, Query, description = "The sealed pending authorization request")),
    responses((status = 200, description = "The reset form", content_type = "text/html")))]
fn account_reset() {}

#[utoipa::path(post, path = "/account/reset", tag = "account pages",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "csrf, email, otp, new_password, optional return"),
    responses(
        (status = 303, description = "Password set, every session signed out: to the /account sign-in, or back to the pending authorization request"),
        (status = 400, description = "Malformed form, or the code is wrong, expired or used", content_type = "text/html"),
        (status = 403, description = "CSRF check failed", content_type = "text/html"),
        (status = 422, description = "The new password is invalid", content_type = "text/html"),
        (status = 429, description = "Too many tries", content_type = "text/html"),
        (status = 503, description = "Backend unavailable or hasher busy", content_type = "text/html"),
    ))]
fn account_reset_form() {}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = Object)))]
fn metadata() {}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "The same RFC 8414 metadata", body = Object)))]
fn openid_configuration() {}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "RFC 7517 JWK Set", body = Object)))]
fn jwks() {}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Serving", body = Object)))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Every backend answers", body = Object),
        (status = 503, description = "A backend does not answer", body = crate::http::problems::Problem, content_type = "application/problem+json"),
    ))]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = Object)))]
fn openapi() {}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera", description = "OAuth 2.0 authorization server and user service. Reference: docs/api.md in the repository."),
    paths(
        crate::http::users::post_signup,
        crate::http::users::post_login,
        crate::http::users::get_me,
        crate::http::users::put_updateusers,
        crate::http::users::put_updatepassword,
        crate::http::users::put_updatemobile,
        crate::http::users::post_forgotpasswords,
        crate::http::users::post_resetpasswordotps,
        crate::http::account::get_sessions,
        crate::http::account::delete_session,
        crate::http::account::delete_sessions,
        crate::http::account::get_consents,
        crate::http::account::delete_consent,
        crate::http::account::post_verifyemail,
        crate::http::account::post_verifyemailotps,
        crate::http::account::delete_me,
        crate::http::admin::clients::list_clients,
        crate::http::admin::clients::post_client,
        crate::http::admin::clients::get_client,
        crate::http::admin::clients::patch_client,
        crate::http::admin::clients::post_client_secret,
        crate::http::admin::clients::delete_client,
        crate::http::admin::users::list_users,
        crate::http::admin::users::get_user,
        crate::http::admin::users::patch_user,
        crate::http::admin::users::delete_user,
        crate::http::admin::users::get_user_sessions,
        crate::http::admin::users::delete_user_sessions,
        crate::http::admin::events::list_events,
        token, par, revoke, introspect, authorize, authorize_form,
        userinfo, userinfo_form, logout, logout_form,
        account, account_form, account_signup, account_signup_form,
        account_forgot, account_forgot_form, account_reset, account_reset_form,
        metadata, openid_configuration, jwks, healthz, readyz, metrics, openapi,
    ),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn get_openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
