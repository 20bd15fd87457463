//! Everything that knows about HTTP: the router, middleware and handlers.

pub mod account;
pub mod admin;
pub mod browser;
pub mod error;
pub mod extract;
pub mod oauth;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod problems;
pub mod server;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::keys::KeyRing;
use crate::domain::account::AccountService;
use crate::domain::authorize::Authorizer;
use crate::domain::clients::ClientService;
use crate::domain::grants::Grants;
use crate::domain::otp::OtpService;
use crate::domain::tokens::TokenService;
use crate::domain::users::UserService;
use crate::http::error::{ApiError, InternalCause};
use crate::mail::Mailer;
use crate::resource::AccessTokenVerifier;
use crate::store::{Directory, TokenStore};
use crate::templates::Templates;

/// Request bodies over this are refused with 413 (docs/api.md).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach: one `Arc`, so that the per-request clone
/// of the state (every extractor takes one) is a single reference count,
/// not one per service (5.7 % of the CPU of `/api/users/me` in a profile).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

impl FromRef<AppState> for Arc<AccessTokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<AppState> for Arc<Vec<ipnet::IpNet>> {
    fn from_ref(state: &AppState) -> Self {
        state.trusted_proxies.clone()
    }
}

impl FromRef<AppState> for axum_extra::extract::cookie::Key {
    fn from_ref(state: &AppState) -> Self {
        state.cookie_key.clone()
    }
}

/// The services and settings behind [`AppState`].
pub struct Services {
    pub config: Arc<Config>,
    pub clock: Clock,
    pub keys: Arc<KeyRing>,
    pub users: Arc<UserService>,
    /// User administration and the audit-event listing.
    pub admin: Arc<crate::domain::admin::AdminService>,
    /// The audit trail (`audit.record(Event::new(..)...)`).
    pub audit: Arc<crate::domain::audit::Audit>,
    pub authorizer: Arc<Authorizer>,
    pub templates: Arc<Templates>,
    /// Encrypts the browser session and CSRF cookies of the pages, and MACs
    /// their `return` values.
    pub cookie_key: axum_extra::extract::cookie::Key,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub otp: Arc<OtpService>,
    /// Self-service: sessions, consents, email verification, deletion.
    pub account: Arc<AccountService>,
    pub mailer: Arc<Mailer>,
    pub clients: Arc<ClientService>,
    pub grants: Arc<Grants>,
    /// DPoP proofs at the token endpoint and the user login.
    pub dpop: Arc<crate::domain::dpop::DpopService>,
    pub tokens: Arc<TokenService>,
    /// Ends sign-in sessions and tells the clients (back-channel logout).
    pub logout: Arc<crate::domain::oidc::Logout>,
    pub verifier: Arc<AccessTokenVerifier>,
    pub user_store: Arc<dyn Directory>,
    pub token_store: Arc<dyn TokenStore>,
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState) -> Router {
    let security = security_layers(&state.config);
    let request_id = HeaderName::from_static("x-request-id");
    let request_timeout = Duration::from_secs(state.config.request_timeout);
    let users = Router::new()
        .route("/signup", post(users::post_signup))
        .route("/login", post(users::post_login))
        .route("/me", get(users::get_me).delete(account::delete_me))
        .route("/updateusers", put(users::put_updateusers))
        .route("/updatepassword", put(users::put_updatepassword))
        .route("/updatemobile", put(users::put_updatemobile))
        .route("/forgotpasswords", post(users::post_forgotpasswords))
        .route("/resetpasswordotps", post(users::post_resetpasswordotps))
        .route(
            "/sessions",
            get(account::get_sessions).delete(account::delete_sessions),
        )
        .route("/sessions/{id}", delete(account::delete_session))
        .route("/consents", get(account::get_consents))
        .route("/consents/{client_id}", delete(account::delete_consent))
        .route("/verifyemail", post(account::post_verifyemail))
        .route("/verifyemailotps", post(account::post_verifyemailotps));

    Router::new()
        .nest("/api/users", users)
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata::get_metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(oauth::metadata::get_metadata),
        )
        .route("/.well-known/jwks.json", get(oauth::metadata::get_jwks))
        .route(
            "/authorize",
            get(oauth::authorize::get_authorize).post(oauth::authorize::post_authorize),
        )
        .route(
            "/authorize/style.css",
            get(oauth::authorize::get_stylesheet),
        )
        .route(
            "/account",
            get(pages::manage::get_account).post(pages::manage::post_account),
        )
        .route(
            "/account/signup",
            get(pages::signup::get_signup).post(pages::signup::post_signup),
        )
        .route(
            "/account/forgot",
            get(pages::recovery::get_forgot).post(pages::recovery::post_forgot),
        )
        .route(
            "/account/reset",
            get(pages::recovery::get_reset).post(pages::recovery::post_reset),
        )
        .route("/token", post(oauth::token::post_token))
        .route("/par", post(oauth::par::post_par))
        .route("/revoke", post(oauth::revoke::post_revoke))
        .route("/introspect", post(oauth::introspect::post_introspect))
        .route(
            "/logout",
            get(oauth::logout::get_logout).post(oauth::logout::post_logout),
        )
        .route(
            "/userinfo",
            get(oauth::userinfo::get_userinfo).post(oauth::userinfo::post_userinfo),
        )
        .nest("/api/admin", admin::router())
        .route("/healthz", get(ops::get_healthz))
        .route("/readyz", get(ops::get_readyz))
        .route("/metrics", get(ops::get_metrics))
        .route("/openapi.json", get(openapi::get_openapi))
        .route_layer(middleware::from_fn(crate::observability::track_requests))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            answer_within(request_timeout, request, next)
        }))
        .layer(middleware::from_fn(log_internal_errors))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(security)
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, RandomRequestId))
}

type MaybeCors = tower::util::Either<CorsLayer, tower::layer::util::Identity>;

/// HSTS when the issuer is https, and CORS for the configured origins only.
fn security_layers(
    config: &Config,
) -> tower::util::Either<(SetResponseHeaderLayer<HeaderValue>, MaybeCors), MaybeCors> {
    // `Config::validate` refused a malformed list at start; should one get
    // here anyway, no origin is allowed and the reason is logged.
    let origins = config.cors_origin_list().unwrap_or_else(|e| {
        tracing::error!(error = %e, "CORS allows no origin");
        Vec::new()
    });
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    // No origin allowed, no CORS layer: its answers could only refuse, and
    // it would clone its lists and add `Vary` on every request.
    let cors = tower::util::option_layer((!origins.is_empty()).then(|| cors_layer(origins)));
    if config.issuer.starts_with("https://") {
        let hsts = SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
        tower::util::Either::Left((hsts, cors))
    } else {
        tower::util::Either::Right(cors)
    }
}

fn cors_layer(origins: Vec<HeaderValue>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
        ])
        // DPoP from a browser app (RFC 9449): the proof header goes out,
        // and the nonce and the challenge must be readable by its script.
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            crate::http::error::DPOP_HEADER,
        ])
        .expose_headers([crate::http::error::DPOP_NONCE, header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(600))
}

/// One span per request with the request id, method and path — never the
/// query string or headers, which can carry codes and tokens.
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
}

/// 408 when a request (reading its body included) takes longer than
/// `limit`: a client that trickles its body does not hold a worker forever.
async fn answer_within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// Logs the cause of every 500 once; the body never carries it.
async fn log_internal_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(cause = %cause, "internal error");
    }
    response
}

/// Request ids for requests that arrive without one.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = crate::crypto::secret::random_token::<12>();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}
