//! axum extractors and a tower layer answering RFC 6750 (Bearer) and
//! RFC 9449 (DPoP) errors.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRef, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;

use crate::dpop::{DpopError, PROOF_ALGORITHMS};
use crate::{AccessClaims, AccessTokenVerifier, DpopRejection, VerifyError};

/// The request header carrying a DPoP proof (RFC 9449 §4.1).
const DPOP_HEADER: &str = "dpop";

/// An RFC 9457 problem+json response with a stable `code` member and a
/// `WWW-Authenticate` header per challenge.
fn problem<B: From<String>>(
    status: StatusCode,
    code: &str,
    detail: &str,
    challenges: &[String],
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
    for value in challenges
        .iter()
        .filter_map(|c| HeaderValue::from_str(c).ok())
    {
        response
            .headers_mut()
            .append(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A `DPoP` challenge (RFC 9449 §7.1): `params`, then the algorithms
/// proofs may use.
fn dpop_challenge(params: &str) -> String {
    let algs = PROOF_ALGORITHMS.join(" ");
    match params {
        "" => format!("DPoP algs=\"{algs}\""),
        _ => format!("DPoP {params}, algs=\"{algs}\""),
    }
}

fn error_params(error: &str, description: &str) -> String {
    format!("error=\"{error}\", error_description=\"{description}\"")
}

/// How an access token was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP` with a `DPoP` proof (RFC 9449).
    Dpop,
}

impl AuthScheme {
    fn of(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("bearer") {
            Some(Self::Bearer)
        } else if name.eq_ignore_ascii_case("dpop") {
            Some(Self::Dpop)
        } else {
            None
        }
    }
}

/// A verified access token, as an axum extractor: `Authorization: Bearer`
/// for plain tokens, `Authorization: DPoP` with a `DPoP` proof for
/// DPoP-bound ones (a bound token is refused as Bearer, RFC 9449 §7.2).
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
    /// How the token was presented. A DPoP-bound token is accepted under
    /// the DPoP scheme only and a plain one under Bearer only, so this is
    /// read from the claims.
    pub fn scheme(&self) -> AuthScheme {
        match self.claims.cnf {
            Some(_) => AuthScheme::Dpop,
            None => AuthScheme::Bearer,
        }
    }

    /// Verifies the Bearer token in `headers`: Bearer only, for callers
    /// that do not know the request's method and URI. The DPoP scheme is
    /// answered as a missing token, and a DPoP-bound token is refused
    /// (`invalid_token`); [`from_request`](Self::from_request) accepts both.
    pub async fn from_headers(
        headers: &HeaderMap,
        verifier: &AccessTokenVerifier,
    ) -> Result<Self, BearerRejection> {
        let invalid = |why| BearerRejection(VerifyError::Invalid(why));
        let token = match credentials(headers).map_err(invalid)? {
            (AuthScheme::Bearer, token) => token,
            (AuthScheme::Dpop, _) => return Err(invalid(MISSING_TOKEN)),
        };
        let claims = verifier.verify(token).await.map_err(BearerRejection)?;
        if claims.cnf.is_some() {
            return Err(invalid(DpopRejection::BOUND_TOKEN_AS_BEARER));
        }
        Ok(Self {
            claims,
            token: token.to_owned(),
        })
    }

    /// Verifies the request's access token: a plain token under the Bearer
    /// scheme, or a DPoP-bound token under the DPoP scheme with exactly one
    /// `DPoP` proof for `method` and `uri` (see
    /// [`AccessTokenVerifier::verify_dpop`]).
    pub async fn from_request(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        verifier: &AccessTokenVerifier,
    ) -> Result<Self, AuthRejection> {
        let (scheme, token) = credentials(headers).map_err(AuthRejection::Missing)?;
        let claims = match scheme {
            AuthScheme::Bearer => bearer_claims(token, verifier).await?,
            AuthScheme::Dpop => {
                let proof = dpop_proof(headers).map_err(AuthRejection::Dpop)?;
                let host = request_host(uri, headers);
                verifier
                    .verify_dpop(token, proof, method.as_str(), uri.path(), host)
                    .await
                    .map_err(AuthRejection::Dpop)?
            }
        };
        Ok(Self {
            claims,
            token: token.to_owned(),
        })
    }
}

/// A plain token's claims; a DPoP-bound token is refused (§7.2).
async fn bearer_claims(
    token: &str,
    verifier: &AccessTokenVerifier,
) -> Result<AccessClaims, AuthRejection> {
    let claims = verifier
        .verify(token)
        .await
        .map_err(|e| AuthRejection::Bearer(BearerRejection(e)))?;
    if claims.cnf.is_some() {
        return Err(AuthRejection::Dpop(DpopRejection::Token(
            DpopRejection::BOUND_TOKEN_AS_BEARER,
        )));
    }
    Ok(claims)
}

/// The single `DPoP` header's proof.
fn dpop_proof(headers: &HeaderMap) -> Result<&str, DpopRejection> {
    let mut values = headers.get_all(DPOP_HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Err(DpopRejection::Proof("missing DPoP proof")),
        (Some(_), Some(_)) => Err(DpopRejection::Proof("send exactly one DPoP proof")),
        (Some(value), None) => value
            .to_str()
            .map_err(|_| DpopRejection::Proof(DpopError::Malformed.reason())),
    }
}

/// The authority the request was sent to: its single `Host` header, else
/// the URI's (HTTP/2 `:authority`).
fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().ok(),
        (None, _) => uri.authority().map(|a| a.as_str()),
        (Some(_), Some(_)) => None,
    }
}

/// The URI the client addressed: before an axum `nest` stripped a prefix.
fn addressed_uri<'a>(uri: &'a Uri, extensions: &'a axum::http::Extensions) -> &'a Uri {
    extensions
        .get::<OriginalUri>()
        .map_or(uri, |original| &original.0)
}

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<AccessTokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let verifier = Arc::<AccessTokenVerifier>::from_ref(state);
        let uri = addressed_uri(&parts.uri, &parts.extensions);
        Self::from_request(&parts.method, uri, &parts.headers, &verifier).await
    }
}

/// What a request without usable credentials is told.
const MISSING_TOKEN: &str = "missing bearer token";

/// The scheme and token of the single `Authorization` header, if it is
/// `Bearer` or `DPoP` (any case); else why not.
fn credentials(headers: &HeaderMap) -> Result<(AuthScheme, &str), &'static str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(MISSING_TOKEN);
    };
    let value = value
        .to_str()
        .map_err(|_| "malformed authorization header")?;
    let (scheme, token) = value.split_once(' ').ok_or(MISSING_TOKEN)?;
    let scheme = AuthScheme::of(scheme).ok_or(MISSING_TOKEN)?;
    Ok((scheme, token.trim()))
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
                &[bearer_challenge(description)],
            ),
            VerifyError::Unavailable => unavailable(),
        }
    }
}

fn bearer_challenge(description: &str) -> String {
    format!("Bearer {}", error_params("invalid_token", description))
}

fn unavailable<B: From<String>>() -> Response<B> {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
        "the token store is unavailable; try again shortly",
        &[],
    )
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> axum::response::Response {
        self.response()
    }
}

/// Why [`Authenticated`] refused a request, answered as problem+json: 401
/// with a `Bearer` (RFC 6750 §3) or `DPoP` (RFC 9449 §7.1) challenge, or
/// 503 when the revocation state or the replay cache could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No usable `Authorization` header: 401 `invalid_token` with a
    /// `Bearer` challenge and a second, `DPoP algs="…"`, so that clients
    /// learn both schemes are accepted.
    Missing(&'static str),
    /// A token presented as Bearer was refused (401 `Bearer` challenge, or
    /// 503).
    Bearer(BearerRejection),
    /// A token presented with the DPoP scheme, or a DPoP-bound token
    /// presented as Bearer, was refused: 401 `invalid_token` or
    /// `invalid_dpop_proof` with a `DPoP` challenge, or 503.
    Dpop(DpopRejection),
}

impl AuthRejection {
    fn response<B: From<String>>(&self) -> Response<B> {
        match self {
            Self::Missing(description) => problem(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                description,
                &[bearer_challenge(description), dpop_challenge("")],
            ),
            Self::Bearer(rejection) => rejection.response(),
            Self::Dpop(DpopRejection::Token(description)) => {
                dpop_problem("invalid_token", description)
            }
            Self::Dpop(DpopRejection::Proof(description)) => {
                dpop_problem("invalid_dpop_proof", description)
            }
            Self::Dpop(DpopRejection::Unavailable) => unavailable(),
        }
    }
}

fn dpop_problem<B: From<String>>(error: &str, description: &str) -> Response<B> {
    problem(
        StatusCode::UNAUTHORIZED,
        error,
        description,
        &[dpop_challenge(&error_params(error, description))],
    )
}

impl IntoResponse for AuthRejection {
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
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` (a
/// `DPoP` challenge for a DPoP request).
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
            return Err(ScopeRejection::Insufficient(
                S::SCOPE.to_owned(),
                auth.scheme(),
            ));
        }
        Ok(Self(auth, PhantomData))
    }
}

/// Why a scope guard refused a request.
#[derive(Debug)]
pub enum ScopeRejection {
    /// No valid token (401, or 503).
    Token(AuthRejection),
    /// A valid token, presented with the scheme given, without the scope
    /// (403).
    Insufficient(String, AuthScheme),
}

impl ScopeRejection {
    fn response<B: From<String>>(&self) -> Response<B> {
        match self {
            Self::Token(rejection) => rejection.response(),
            Self::Insufficient(scope, scheme) => {
                let params = format!("error=\"insufficient_scope\", scope=\"{scope}\"");
                let challenge = match scheme {
                    AuthScheme::Bearer => format!("Bearer {params}"),
                    AuthScheme::Dpop => dpop_challenge(&params),
                };
                problem(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    &format!("the token lacks the scope {scope}"),
                    &[challenge],
                )
            }
        }
    }
}

impl IntoResponse for ScopeRejection {
    fn into_response(self) -> axum::response::Response {
        self.response()
    }
}

/// A tower layer for any `http` service: verifies the access token (Bearer,
/// or DPoP-bound with its proof, as [`Authenticated::from_request`]), puts
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
            let method = request.method().clone();
            let uri = addressed_uri(request.uri(), request.extensions()).clone();
            let verified =
                Authenticated::from_request(&method, &uri, request.headers(), &layer.verifier)
                    .await;
            let auth = match verified {
                Ok(auth) => auth,
                Err(rejection) => return Ok(rejection.response()),
            };
            if let Some(scope) = &layer.scope
                && !auth.claims.has_scope(scope)
            {
                let rejection = ScopeRejection::Insufficient(scope.to_string(), auth.scheme());
                return Ok(rejection.response());
            }
            request.extensions_mut().insert(auth.claims.clone());
            request.extensions_mut().insert(auth);
            inner.call(request).await
        })
    }
}
