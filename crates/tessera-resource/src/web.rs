//! axum extractors and a tower layer answering RFC 6750 errors.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;

use crate::{AccessClaims, AccessTokenVerifier, VerifyError};

/// An RFC 9457 problem+json response with a stable `code` member and, if
/// given, a `WWW-Authenticate` challenge.
fn problem<B: From<String>>(
    status: StatusCode,
    code: &str,
    detail: &str,
    challenge: Option<String>,
) -> Response<B> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A verified `Authorization: Bearer` access token, as an axum extractor.
/// Needs `Arc<AccessTokenVerifier>: FromRef<S>`; behind a [`BearerLayer`]
/// it takes the claims the layer verified instead of verifying again.
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get, extract::FromRef};
/// use tessera_resource::{AccessTokenVerifier, Authenticated, jwk::StaticKeys};
///
/// #[derive(Clone, FromRef)]
/// struct State { verifier: Arc<AccessTokenVerifier> }
///
/// async fn hello(auth: Authenticated) -> String { format!("hello {}", auth.claims.sub) }
///
/// let verifier = AccessTokenVerifier::new(Arc::new(StaticKeys::default()), "https://auth.example.com", "https://api.example.com");
/// let app: Router = Router::new().route("/hello", get(hello)).with_state(State { verifier: Arc::new(verifier) });
/// ```
#[derive(Clone)]
pub struct Authenticated {
    /// The verified claims.
    pub claims: AccessClaims,
    /// The raw token, for handlers that pass it on or revoke it.
    pub token: String,
}

/// The claims only: the raw token is a bearer credential and never printed.
impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl Authenticated {
    /// Verifies the Bearer token in `headers`.
    pub async fn from_headers(
        headers: &HeaderMap,
        verifier: &AccessTokenVerifier,
    ) -> Result<Self, BearerRejection> {
        let token = bearer_token(headers)?;
        let claims = verifier.verify(token).await.map_err(BearerRejection)?;
        Ok(Self {
            claims,
            token: token.to_owned(),
        })
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<AccessTokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let verifier = Arc::<AccessTokenVerifier>::from_ref(state);
        Self::from_headers(&parts.headers, &verifier).await
    }
}

/// The token of a single `Authorization: Bearer` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerRejection> {
    let missing = || BearerRejection(VerifyError::Invalid("missing bearer token"));
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(missing());
    };
    let value = value
        .to_str()
        .map_err(|_| BearerRejection(VerifyError::Invalid("malformed authorization header")))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    Ok(token.trim())
}

/// RFC 6750 §3 answer: 401 with `WWW-Authenticate: Bearer error="invalid_token"`
/// (or 503 when the revocation state could not be read), as problem+json.
#[derive(Debug)]
pub struct BearerRejection(pub VerifyError);

impl BearerRejection {
    fn response<B: From<String>>(&self) -> Response<B> {
        match self.0 {
            VerifyError::Invalid(description) => problem(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                description,
                Some(format!(
                    "Bearer error=\"invalid_token\", error_description=\"{description}\""
                )),
            ),
            VerifyError::Unavailable => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                "the token store is unavailable; try again shortly",
                None,
            ),
        }
    }
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> axum::response::Response {
        self.response()
    }
}

/// A scope a route requires, for [`RequireScope`].
///
/// ```
/// use tessera_resource::Scope;
/// struct ItemsRead;
/// impl Scope for ItemsRead { const SCOPE: &'static str = "items:read"; }
/// ```
pub trait Scope: Send + Sync + 'static {
    /// The scope's name, as in the token's `scope` claim.
    const SCOPE: &'static str;
}

/// A verified token that grants `S::SCOPE`; otherwise 401 (no valid token)
/// or 403 `insufficient_scope` with
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`.
///
/// ```
/// use tessera_resource::{RequireScope, Scope};
/// struct ItemsRead;
/// impl Scope for ItemsRead { const SCOPE: &'static str = "items:read"; }
///
/// async fn items(RequireScope(auth, ..): RequireScope<ItemsRead>) -> String {
///     format!("items of {}", auth.claims.sub)
/// }
/// ```
pub struct RequireScope<S: Scope>(pub Authenticated, pub PhantomData<S>);

impl<S: Scope> std::fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequireScope")
            .field(&S::SCOPE)
            .field(&self.0)
            .finish()
    }
}

impl<S: Scope> std::ops::Deref for RequireScope<S> {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        &self.0
    }
}

impl<St, S> FromRequestParts<St> for RequireScope<S>
where
    Arc<AccessTokenVerifier>: FromRef<St>,
    St: Send + Sync,
    S: Scope,
{
    type Rejection = ScopeRejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let auth = Authenticated::from_request_parts(parts, state)
            .await
            .map_err(ScopeRejection::Token)?;
        if !auth.claims.has_scope(S::SCOPE) {
            return Err(ScopeRejection::Insufficient(S::SCOPE.to_owned()));
        }
        Ok(Self(auth, PhantomData))
    }
}

/// Why a scope guard refused a request.
#[derive(Debug)]
pub enum ScopeRejection {
    /// No valid token (401, or 503).
    Token(BearerRejection),
    /// A valid token without the scope (403).
    Insufficient(String),
}

impl ScopeRejection {
    fn response<B: From<String>>(&self) -> Response<B> {
        match self {
            Self::Token(rejection) => rejection.response(),
            Self::Insufficient(scope) => problem(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                &format!("the token lacks the scope {scope}"),
                Some(format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
                )),
            ),
        }
    }
}

impl IntoResponse for ScopeRejection {
    fn into_response(self) -> axum::response::Response {
        self.response()
    }
}

/// A tower layer for any `http` service: verifies the Bearer token, puts
/// the [`Authenticated`] token (and its [`AccessClaims`]) in the request's
/// extensions and calls the inner service; otherwise answers 401 (or 503),
/// or 403 if a [`require_scope`](Self::require_scope) is missing.
///
/// ```
/// use std::sync::Arc;
/// use tower::ServiceBuilder;
/// use tessera_resource::{AccessClaims, AccessTokenVerifier, BearerLayer, jwk::StaticKeys};
///
/// let verifier = Arc::new(AccessTokenVerifier::new(Arc::new(StaticKeys::default()), "https://auth.example.com", "https://api.example.com"));
/// let service = ServiceBuilder::new()
///     .layer(BearerLayer::new(verifier).require_scope("items:read"))
///     .service_fn(|req: axum::http::Request<String>| async move {
///         let claims = req.extensions().get::<AccessClaims>().cloned();
///         Ok::<_, std::convert::Infallible>(axum::http::Response::new(format!("{:?}", claims.map(|c| c.sub))))
///     });
/// ```
#[derive(Clone)]
pub struct BearerLayer {
    verifier: Arc<AccessTokenVerifier>,
    scope: Option<Arc<str>>,
}

impl BearerLayer {
    /// Verifies with `verifier`.
    pub fn new(verifier: Arc<AccessTokenVerifier>) -> Self {
        Self {
            verifier,
            scope: None,
        }
    }

    /// Also requires the token to grant `scope` (else 403 `insufficient_scope`).
    pub fn require_scope(mut self, scope: &str) -> Self {
        self.scope = Some(Arc::from(scope));
        self
    }
}

impl<S> tower::Layer<S> for BearerLayer {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`BearerLayer`] makes.
#[derive(Clone)]
pub struct BearerService<S> {
    inner: S,
    layer: BearerLayer,
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for BearerService<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: From<String> + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        // The clone is not ready; the ready one is taken for this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let auth = match Authenticated::from_headers(request.headers(), &layer.verifier).await {
                Ok(auth) => auth,
                Err(rejection) => return Ok(rejection.response()),
            };
            if let Some(scope) = &layer.scope
                && !auth.claims.has_scope(scope)
            {
                return Ok(ScopeRejection::Insufficient(scope.to_string()).response());
            }
            request.extensions_mut().insert(auth.claims.clone());
            request.extensions_mut().insert(auth);
            inner.call(request).await
        })
    }
}
