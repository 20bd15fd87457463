use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::jwk::{StaticKeys, decoding_key_of};

/// An Ed25519 PKCS#8 key (test only), base64 DER.
pub(crate) const ED_PKCS8: &str =
    "MC4CAQAwBQYDK2VwBCIEIKlkRICJqxUapBEHtwlLMtZsYsgrOu4Xp8j++Zr5OTaf";
pub(crate) const ED_X: &str = "5DcveGfLASzWOf0ee3Z8o06pEWNvUrThSRTUqbsWaio";
pub(crate) const ISS: &str = "https://auth.test";
pub(crate) const AUD: &str = "https://api.test";

pub(crate) fn keys() -> StaticKeys {
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "k1", "alg": "EdDSA", "use": "sig"});
    let (kid, key) = decoding_key_of(&jwk).expect("a usable JWK");
    StaticKeys([(kid, key)].into_iter().collect())
}

pub(crate) struct FixedClock(pub(crate) Arc<AtomicI64>);
impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) fn claims(scope: &str) -> AccessClaims {
    let now = SystemClock.now();
    AccessClaims {
        iss: ISS.into(),
        sub: "user-1".into(),
        aud: AUD.into(),
        exp: now + 300,
        iat: now,
        jti: "jti-1".into(),
        client_id: "app".into(),
        scope: scope.into(),
        role: None,
        sid: None,
        fid: None,
        cep: None,
        cnf: None,
    }
}

pub(crate) fn sign_with(claims: &AccessClaims, typ: Option<&str>, kid: &str) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = typ.map(str::to_owned);
    header.kid = Some(kid.to_owned());
    let der = base64::engine::general_purpose::STANDARD
        .decode(ED_PKCS8)
        .expect("base64");
    let key = EncodingKey::from_ed_der(&der);
    jsonwebtoken::encode(&header, claims, &key).expect("signs")
}

pub(crate) fn sign(claims: &AccessClaims) -> String {
    sign_with(claims, Some("at+jwt"), "k1")
}

pub(crate) fn verifier() -> AccessTokenVerifier {
    AccessTokenVerifier::new(Arc::new(keys()), ISS, AUD)
}

/// A token with `header` (as JSON) over the body and signature of `token`.
fn reheader(token: &str, header: serde_json::Value) -> String {
    let rest = token.split_once('.').expect("a JWS").1;
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

async fn refused(v: &AccessTokenVerifier, token: &str) -> &'static str {
    match v.verify(token).await {
        Err(VerifyError::Invalid(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_is_accepted() {
    let c = claims("items:read");
    assert_eq!(verifier().verify(&sign(&c)).await.expect("valid"), c);
    let typed = sign_with(&c, Some("application/at+jwt"), "k1");
    assert!(verifier().verify(&typed).await.is_ok());
}

#[tokio::test]
async fn the_header_is_checked_before_the_key() {
    let v = verifier();
    let good = sign(&claims("s"));
    assert_eq!(
        refused(&v, &sign_with(&claims("s"), Some("JWT"), "k1")).await,
        "not an access token"
    );
    assert_eq!(
        refused(&v, &sign_with(&claims("s"), None, "k1")).await,
        "not an access token"
    );
    assert_eq!(
        refused(&v, &sign_with(&claims("s"), Some("at+jwt"), "k2")).await,
        "unknown key"
    );
    let none = reheader(&good, json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}));
    assert_eq!(refused(&v, &none).await, "unsupported algorithm");
    let unsigned = format!("{}.", good.rsplit_once('.').expect("a JWS").0);
    let unsigned = reheader(&unsigned, json!({"alg": "none", "typ": "at+jwt"}));
    assert_eq!(refused(&v, &unsigned).await, "unsupported algorithm");
    let hs = reheader(&good, json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}));
    assert_eq!(refused(&v, &hs).await, "unsupported algorithm");
    let rs = reheader(&good, json!({"alg": "RS256", "typ": "at+jwt", "kid": "k1"}));
    assert_eq!(refused(&v, &rs).await, "algorithm does not match the key");
    let crit = reheader(
        &good,
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "crit": ["exp"]}),
    );
    assert_eq!(refused(&v, &crit).await, "unsupported token header");
    let cty = reheader(
        &good,
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "cty": null}),
    );
    assert_eq!(refused(&v, &cty).await, "unsupported token header");
    let bad_kid = reheader(&good, json!({"alg": "EdDSA", "typ": "at+jwt", "kid": 1}));
    assert_eq!(refused(&v, &bad_kid).await, "malformed token");
    assert_eq!(refused(&v, "a.b").await, "malformed token");
    assert_eq!(refused(&v, "").await, "malformed token");
}

#[tokio::test]
async fn issuer_audience_and_signature_are_checked() {
    let v = verifier();
    let mut c = claims("s");
    c.aud = "https://other.test".into();
    assert_eq!(refused(&v, &sign(&c)).await, "invalid token");
    let mut c = claims("s");
    c.iss = "https://evil.test".into();
    assert_eq!(refused(&v, &sign(&c)).await, "invalid token");
    let good = sign(&claims("s"));
    let (head, _) = good.rsplit_once('.').expect("a JWS");
    let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    assert_eq!(refused(&v, &forged).await, "invalid token");
}

#[tokio::test]
async fn time_is_judged_by_the_clock_with_leeway() {
    let now = Arc::new(AtomicI64::new(SystemClock.now()));
    let v = verifier().leeway(10).clock(FixedClock(now.clone()));
    let token = sign(&claims("s"));
    assert!(v.verify(&token).await.is_ok());
    now.fetch_add(305, Ordering::Relaxed);
    assert!(v.verify(&token).await.is_ok(), "within the leeway");
    now.fetch_add(10, Ordering::Relaxed);
    assert_eq!(refused(&v, &token).await, "token expired");
    now.fetch_sub(300 + 315 + 11, Ordering::Relaxed);
    assert_eq!(refused(&v, &token).await, "token used before issued");
}

struct Revoked(AtomicUsize, Option<bool>);
#[async_trait]
impl RevocationCheck for Revoked {
    async fn is_revoked(&self, token: &str, claims: &AccessClaims) -> Result<bool, VerifyError> {
        assert!(!token.is_empty() && claims.jti == "jti-1");
        self.0.fetch_add(1, Ordering::Relaxed);
        self.1.ok_or(VerifyError::Unavailable)
    }
}

#[tokio::test]
async fn revocation_is_consulted_after_the_signature() {
    let token = sign(&claims("s"));
    let check = Arc::new(Revoked(AtomicUsize::new(0), Some(true)));
    let v = verifier().revocation(check.clone());
    assert_eq!(refused(&v, &token).await, "token revoked");
    assert!(v.verify_signature(&token).await.is_ok());
    assert_eq!(refused(&v, "x.y.z").await, "malformed token");
    assert_eq!(check.0.load(Ordering::Relaxed), 1);
    let down = verifier().revocation(Arc::new(Revoked(AtomicUsize::new(0), None)));
    assert!(matches!(
        down.verify(&token).await,
        Err(VerifyError::Unavailable)
    ));
    let live = verifier().revocation(Arc::new(Revoked(AtomicUsize::new(0), Some(false))));
    assert!(live.verify(&token).await.is_ok());
}

#[cfg(feature = "axum")]
mod web {
    use axum::body::Body;
    use axum::extract::FromRef;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::{Authenticated, BearerLayer, RequireScope, Scope};

    struct ItemsRead;
    impl Scope for ItemsRead {
        const SCOPE: &'static str = "items:read";
    }

    #[derive(Clone, FromRef)]
    struct State {
        verifier: Arc<AccessTokenVerifier>,
    }

    fn request(token: Option<&str>) -> Request<Body> {
        let mut builder = Request::builder().uri("/items");
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(Body::empty()).expect("a request")
    }

    fn challenge(response: &axum::response::Response) -> String {
        response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn the_scope_guard_answers_401_and_403() {
        async fn items(auth: RequireScope<ItemsRead>) -> String {
            auth.claims.sub.clone()
        }
        let app = axum::Router::new()
            .route("/items", get(items))
            .with_state(State {
                verifier: Arc::new(verifier()),
            });
        let ok = app
            .clone()
            .oneshot(request(Some(&sign(&claims("profile items:read")))))
            .await
            .expect("infallible");
        assert_eq!(ok.status(), StatusCode::OK);
        let none = app
            .clone()
            .oneshot(request(None))
            .await
            .expect("infallible");
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert!(challenge(&none).starts_with("Bearer error=\"invalid_token\""));
        let short = app
            .oneshot(request(Some(&sign(&claims("profile")))))
            .await
            .expect("infallible");
        assert_eq!(short.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            challenge(&short),
            "Bearer error=\"insufficient_scope\", scope=\"items:read\""
        );
        assert_eq!(
            short.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[tokio::test]
    async fn the_layer_guards_a_plain_tower_service() {
        let service = tower::ServiceBuilder::new()
            .layer(BearerLayer::new(Arc::new(verifier())).require_scope("items:read"))
            .service_fn(|req: Request<Body>| async move {
                let sub = req
                    .extensions()
                    .get::<AccessClaims>()
                    .map(|c| c.sub.clone())
                    .unwrap_or_default();
                assert!(req.extensions().get::<Authenticated>().is_some());
                Ok::<_, std::convert::Infallible>(axum::http::Response::new(Body::from(sub)))
            });
        let ok = service
            .clone()
            .oneshot(request(Some(&sign(&claims("items:read")))))
            .await
            .expect("infallible");
        assert_eq!(ok.status(), StatusCode::OK);
        let body = axum::body::to_bytes(ok.into_body(), 1024)
            .await
            .expect("a body");
        assert_eq!(&body[..], b"user-1");
        let bad = service
            .clone()
            .oneshot(request(Some("not.a.token")))
            .await
            .expect("infallible");
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
        let short = service
            .oneshot(request(Some(&sign(&claims("other")))))
            .await
            .expect("infallible");
        assert_eq!(short.status(), StatusCode::FORBIDDEN);
        assert!(challenge(&short).contains("insufficient_scope"));
    }
}

#[cfg(all(feature = "remote", feature = "axum"))]
mod remote {
    use std::time::Duration;

    use axum::routing::{get, post};

    use super::*;
    use crate::{Introspection, RemoteJwks};

    /// A stand-in issuer: its JWKS (with `max-age`) and an `/introspect`
    /// answering `active` (or 500 when `active` is `None`), counting calls.
    struct Issuer {
        base: String,
        jwks_calls: Arc<AtomicUsize>,
        introspect_calls: Arc<AtomicUsize>,
    }

    async fn issuer(active: Option<bool>) -> Issuer {
        let jwks_calls = Arc::new(AtomicUsize::new(0));
        let introspect_calls = Arc::new(AtomicUsize::new(0));
        let (j, i) = (jwks_calls.clone(), introspect_calls.clone());
        let app = axum::Router::new()
            .route(
                "/jwks",
                get(move || async move {
                    j.fetch_add(1, Ordering::Relaxed);
                    (
                        [("cache-control", "public, max-age=600")],
                        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "k1", "alg": "EdDSA"}]})
                            .to_string(),
                    )
                }),
            )
            .route(
                "/introspect",
                post(move |headers: axum::http::HeaderMap| async move {
                    i.fetch_add(1, Ordering::Relaxed);
                    assert!(headers.contains_key("authorization"), "HTTP Basic");
                    match active {
                        Some(active) => (axum::http::StatusCode::OK, json!({ "active": active }).to_string()),
                        None => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer {
            base,
            jwks_calls,
            introspect_calls,
        }
    }

    #[tokio::test]
    async fn the_remote_jwks_is_cached_and_refetched_rarely() {
        let issuer = issuer(Some(true)).await;
        let jwks = Arc::new(
            RemoteJwks::new(format!("{}/jwks", issuer.base)).min_refresh(Duration::from_secs(60)),
        );
        let v = AccessTokenVerifier::new(jwks.clone(), ISS, AUD);
        let token = sign(&claims("s"));
        for _ in 0..3 {
            assert!(v.verify(&token).await.is_ok());
        }
        assert_eq!(
            issuer.jwks_calls.load(Ordering::Relaxed),
            1,
            "cached for max-age"
        );
        // Unknown kids, concurrently: no refetch within min_refresh.
        let unknown = sign_with(&claims("s"), Some("at+jwt"), "k9");
        let v = Arc::new(v);
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (v, unknown) = (v.clone(), unknown.clone());
            calls.spawn(async move { v.verify(&unknown).await });
        }
        for refused in calls.join_all().await {
            assert!(matches!(refused, Err(VerifyError::Invalid("unknown key"))));
        }
        assert_eq!(
            issuer.jwks_calls.load(Ordering::Relaxed),
            1,
            "within min_refresh"
        );
        // Past min_refresh, an unknown kid refetches (a rotated-in key).
        let eager = AccessTokenVerifier::new(
            Arc::new(RemoteJwks::new(format!("{}/jwks", issuer.base)).min_refresh(Duration::ZERO)),
            ISS,
            AUD,
        );
        assert!(eager.verify(&token).await.is_ok());
        assert!(eager.verify(&unknown).await.is_err());
        assert_eq!(
            issuer.jwks_calls.load(Ordering::Relaxed),
            3,
            "one fetch, one refetch"
        );
    }

    #[tokio::test]
    async fn introspection_answers_are_cached_by_jti_and_failures_are_closed() {
        let live = issuer(Some(true)).await;
        let token = sign(&claims("s"));
        let check = Arc::new(Introspection::new(
            format!("{}/introspect", live.base),
            "api",
            "secret",
        ));
        let v = verifier().revocation(check);
        assert!(v.verify(&token).await.is_ok());
        assert!(v.verify(&token).await.is_ok());
        assert_eq!(
            live.introspect_calls.load(Ordering::Relaxed),
            1,
            "cached by jti"
        );
        let uncached = verifier().revocation(Arc::new(
            Introspection::new(format!("{}/introspect", live.base), "api", "secret")
                .cache_ttl(Duration::ZERO),
        ));
        assert!(uncached.verify(&token).await.is_ok());
        assert!(uncached.verify(&token).await.is_ok());
        assert_eq!(live.introspect_calls.load(Ordering::Relaxed), 3);

        let revoked = issuer(Some(false)).await;
        let v = verifier().revocation(Arc::new(Introspection::new(
            format!("{}/introspect", revoked.base),
            "api",
            "secret",
        )));
        assert_eq!(refused(&v, &token).await, "token revoked");
        assert_eq!(refused(&v, &token).await, "token revoked");
        assert_eq!(
            revoked.introspect_calls.load(Ordering::Relaxed),
            1,
            "revoked stays revoked"
        );

        let broken = issuer(None).await;
        let url = format!("{}/introspect", broken.base);
        let closed =
            verifier().revocation(Arc::new(Introspection::new(url.clone(), "api", "secret")));
        assert!(matches!(
            closed.verify(&token).await,
            Err(VerifyError::Unavailable)
        ));
        let open = verifier().revocation(Arc::new(
            Introspection::new(url, "api", "secret").fail_open(true),
        ));
        assert!(open.verify(&token).await.is_ok());
    }
}
